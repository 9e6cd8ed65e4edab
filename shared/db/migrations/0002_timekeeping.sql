-- Business time shared by every worker. 'system' is the wall clock; any other name is a test
-- clock that moves only when told to (som clock advance), like Stripe's test clocks.
CREATE SCHEMA IF NOT EXISTS timekeeping;

CREATE TABLE timekeeping.clocks (
    name       text PRIMARY KEY,
    now        timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION timekeeping.clock_now(clock_name text) RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN clock_name = 'system' THEN now()
                ELSE (SELECT c.now FROM timekeeping.clocks c WHERE c.name = clock_name) END
$$;

-- Durable timers of every service. Firing one publishes its event through the outbox and stamps
-- fired_at in the same transaction; FOR UPDATE SKIP LOCKED lets several schedulers of a service
-- run without firing a timer twice, and the rows survive restarts.
CREATE TABLE timekeeping.timers (
    id              bigserial PRIMARY KEY,
    service         text NOT NULL,            -- namespaced service whose scheduler fires it
    subscription_id text NOT NULL,
    kind            text NOT NULL,
    due_at          timestamptz NOT NULL,
    clock           text NOT NULL DEFAULT 'system',
    topic           text NOT NULL,            -- logical topic the event goes to
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,           -- the event's data
    created_at      timestamptz NOT NULL DEFAULT now(),
    fired_at        timestamptz,
    cancelled_at    timestamptz
);
CREATE INDEX timers_due ON timekeeping.timers (service, due_at, id) WHERE fired_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX timers_by_subscription ON timekeeping.timers (subscription_id, kind)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
