-- Users and roles per subscription (from operators; channel events can add them the same way),
-- and the append-only audit of every change.
CREATE TABLE entitlements.subscription_users (
    subscription_id text NOT NULL,
    customer_id     text NOT NULL,
    email           text NOT NULL,
    role            text NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'reader')),
    removed         boolean NOT NULL DEFAULT false,  -- kept, so the check API's projection sees removals
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, email)
);
CREATE INDEX subscription_users_customer ON entitlements.subscription_users (customer_id);

CREATE TABLE entitlements.user_audit (
    id              bigserial PRIMARY KEY,
    subscription_id text NOT NULL,
    customer_id     text NOT NULL,
    email           text NOT NULL,
    action          text NOT NULL CHECK (action IN ('add', 'remove')),
    role            text,
    actor           text NOT NULL,
    reason          text,
    cause_event_id  text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER user_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON entitlements.user_audit
    FOR EACH STATEMENT EXECUTE FUNCTION entitlements.append_only();
