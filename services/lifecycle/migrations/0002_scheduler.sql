-- Business clocks: 'system' is the wall clock; any other name is a test clock that only moves
-- when told to (som clock advance), like Stripe's test clocks.
CREATE TABLE lifecycle.clocks (
    name       text PRIMARY KEY,
    now        timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Durable timers. Firing one emits its command through the outbox and stamps fired_at in the
-- same transaction; FOR UPDATE SKIP LOCKED lets several schedulers run without double firing.
CREATE TABLE lifecycle.timers (
    id              bigserial PRIMARY KEY,
    subscription_id text NOT NULL,
    kind            text NOT NULL,
    due_at          timestamptz NOT NULL,
    clock           text NOT NULL DEFAULT 'system',
    command         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    fired_at        timestamptz,
    cancelled_at    timestamptz
);
CREATE INDEX timers_due ON lifecycle.timers (clock, due_at, id) WHERE fired_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX timers_by_subscription ON lifecycle.timers (subscription_id, kind) WHERE fired_at IS NULL AND cancelled_at IS NULL;

CREATE FUNCTION lifecycle.clock_now(clock_name text) RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN clock_name = 'system' THEN now()
                ELSE (SELECT c.now FROM lifecycle.clocks c WHERE c.name = clock_name) END
$$;
