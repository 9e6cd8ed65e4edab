CREATE SCHEMA IF NOT EXISTS lifecycle;

CREATE TABLE lifecycle.subscriptions (
    subscription_id text PRIMARY KEY,
    status          text NOT NULL,
    version         integer NOT NULL,
    channel         text NOT NULL,
    customer_id     text NOT NULL,
    plan_id         text NOT NULL,
    state           jsonb NOT NULL,      -- the domain state (items, periods, scheduled changes)
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_by_status ON lifecycle.subscriptions (status);
CREATE INDEX subscriptions_by_customer ON lifecycle.subscriptions (customer_id);

-- Every command's idempotency key, forever: the same key twice has one effect, even weeks apart.
CREATE TABLE lifecycle.command_keys (
    idempotency_key text PRIMARY KEY,
    subscription_id text NOT NULL,
    outcome         text NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now()
);

-- Append-only audit trail: one row per state change.
CREATE TABLE lifecycle.audit_trail (
    id              bigserial PRIMARY KEY,
    subscription_id text NOT NULL,
    from_status     text,
    to_status       text NOT NULL,
    command         text NOT NULL,
    actor           text NOT NULL,
    reason          text,
    channel         text NOT NULL,
    effective_at    timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    correlation_id  text,
    trace_id        text
);
CREATE INDEX audit_trail_by_subscription ON lifecycle.audit_trail (subscription_id, id);

CREATE FUNCTION lifecycle.audit_trail_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lifecycle.audit_trail is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER audit_trail_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON lifecycle.audit_trail
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.audit_trail_is_append_only();

-- Users, roles and instances per subscription (instances are reported by provisioning).
CREATE TABLE lifecycle.subscription_users (
    subscription_id text NOT NULL,
    user_id         text NOT NULL,
    email           text,
    role            text NOT NULL,
    PRIMARY KEY (subscription_id, user_id)
);
CREATE TABLE lifecycle.instances (
    subscription_id text NOT NULL,
    instance_id     text NOT NULL,
    status          text NOT NULL,
    reported_at     timestamptz NOT NULL,
    PRIMARY KEY (subscription_id, instance_id)
);
