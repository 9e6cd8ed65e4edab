-- Per-customer sets, the append-only history of every set, and operator overrides.

ALTER TABLE entitlements.entitlement_sets
    ADD COLUMN customer_id text,
    ADD COLUMN inputs jsonb;              -- the lifecycle snapshot the set was computed from
CREATE INDEX entitlement_sets_customer ON entitlements.entitlement_sets (customer_id);

-- One row per customer: the merged set. Its row lock serialises every change of the customer,
-- so two subscriptions changing at once both end up in the merged set.
CREATE TABLE entitlements.customer_sets (
    customer_id text PRIMARY KEY,
    version     integer NOT NULL,          -- only grows; 0 = nothing published yet
    body        jsonb NOT NULL,
    effective_at timestamptz,              -- business time of the last recompute: history stays ordered
    next_boundary timestamptz,             -- when its one re-evaluation timer is due (NULL: none)
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every published set, never changed: "what could customer X use at time T" and why.
CREATE TABLE entitlements.history (
    id               bigserial PRIMARY KEY,
    scope            text NOT NULL CHECK (scope IN ('subscription', 'customer')),
    customer_id      text NOT NULL,
    subscription_id  text,                -- NULL for the customer's merged set
    version          integer NOT NULL,
    previous_version integer NOT NULL,
    body             jsonb NOT NULL,
    effective_at     timestamptz NOT NULL,
    cause_event_id   text NOT NULL,
    cause_command    text NOT NULL,
    cause_actor      text NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX history_customer ON entitlements.history (customer_id, scope, effective_at);

-- Operator grants: a feature, or a limit raised to a value, from a date until a date. Never
-- changed either: an audit of who granted what, why.
CREATE TABLE entitlements.overrides (
    override_id     text PRIMARY KEY,
    customer_id     text NOT NULL,
    subscription_id text,
    feature         text NOT NULL,
    value           bigint,               -- NULL: a boolean feature
    starts_at       timestamptz NOT NULL,
    until           timestamptz,
    reason          text NOT NULL,
    actor           text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX overrides_customer ON entitlements.overrides (customer_id);

CREATE FUNCTION entitlements.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'entitlements.% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON entitlements.history
    FOR EACH STATEMENT EXECUTE FUNCTION entitlements.append_only();
CREATE TRIGGER overrides_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON entitlements.overrides
    FOR EACH STATEMENT EXECUTE FUNCTION entitlements.append_only();
