-- The check API's projection reads changes by changed_xid (0008) and nothing filters or orders
-- these tables by updated_at any more (the oldest unacknowledged set is found through the
-- entitlement_sets_unacknowledged partial index). Every insert and update wrote these for nothing.
DROP INDEX IF EXISTS entitlements.customer_sets_updated;
DROP INDEX IF EXISTS entitlements.entitlement_sets_updated;
DROP INDEX IF EXISTS entitlements.subscription_users_updated;
