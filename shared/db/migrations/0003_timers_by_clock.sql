-- Due timers are found per clock: the wall clock ('system') compares with now(), each test clock
-- with its own row. Indexed by (service, clock, due_at), a scheduler's poll reads only what is due,
-- however many future timers (renewals, notices, month-end journal entries) are pending.
CREATE INDEX timers_due_by_clock ON timekeeping.timers (service, clock, due_at, id)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
DROP INDEX IF EXISTS timekeeping.timers_due;
CREATE INDEX timers_due_on_clock ON timekeeping.timers (clock, due_at)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
-- A subscription's pending timers, found by the service that owns them (cancel, reschedule).
DROP INDEX IF EXISTS timekeeping.timers_by_subscription;
CREATE INDEX timers_by_subscription ON timekeeping.timers (subscription_id, service, kind)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
