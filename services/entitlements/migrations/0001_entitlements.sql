CREATE SCHEMA IF NOT EXISTS entitlements;

CREATE TABLE entitlements.entitlement_sets (
    subscription_id   text PRIMARY KEY,
    version           integer NOT NULL,   -- only grows
    lifecycle_version integer NOT NULL,   -- last lifecycle change applied (stale events are ignored)
    body              jsonb NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
