-- The outbox is a queue: every row is inserted, published and deleted within moments, so the
-- table is mostly dead rows unless vacuumed often. The default (vacuum after 20 % of the table
-- changed, throttled) let it bloat to hundreds of thousands of dead rows in a 20,000-order run,
-- which every claim then walked. Vacuum it after a fixed number of dead rows, unthrottled.
ALTER TABLE messaging.outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0
);
