-- (status) and (customer_id) are the leading columns of the console's recency indexes, which serve
-- the same lookups; every insert, and every update (updated_at changes, so none is HOT), wrote
-- both twice.
DROP INDEX IF EXISTS lifecycle.subscriptions_by_status;
DROP INDEX IF EXISTS lifecycle.subscriptions_by_customer;
