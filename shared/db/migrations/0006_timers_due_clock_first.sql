-- The due-timer index leads with the clock, so only a scheduler's poll (clock and service given)
-- can use it. Led by the service, it also matched "this service's pending timers of one
-- subscription" (cancel, reschedule): on tables not yet analysed (a fresh system filling up) the
-- planner took it for those and read every pending timer of the service per statement, 2,750 rows
-- a cancel in a 5,000-subscription renewal run, instead of the (subscription_id, ...) index.
CREATE INDEX timers_due_by_clock_service ON timekeeping.timers (clock, service, due_at, id)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
DROP INDEX IF EXISTS timekeeping.timers_due_by_clock;
