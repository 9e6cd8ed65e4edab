-- Acknowledged sync: what provisioning applied, when each set was last published, instances it
-- runs (against the allowance), and instructions (block new instances, data cleanup) until acked.

ALTER TABLE entitlements.entitlement_sets
    ADD COLUMN applied_version integer NOT NULL DEFAULT 0,   -- highest version provisioning acknowledged
    ADD COLUMN published_at timestamptz NOT NULL DEFAULT now(), -- wall time of the last (re-)publication
    ADD COLUMN republished integer NOT NULL DEFAULT 0;
-- Sets published before acknowledgements existed count as applied: no re-publication storm on upgrade.
UPDATE entitlements.entitlement_sets SET applied_version = version;
CREATE INDEX entitlement_sets_unacknowledged ON entitlements.entitlement_sets (published_at)
    WHERE version > applied_version;

CREATE TABLE entitlements.instances (
    subscription_id text NOT NULL,
    instance_id     text NOT NULL,
    status          text NOT NULL,
    reported_at     timestamptz NOT NULL,
    PRIMARY KEY (subscription_id, instance_id)
);

CREATE TABLE entitlements.instructions (
    instruction_id  text PRIMARY KEY,
    kind            text NOT NULL,
    subscription_id text NOT NULL,
    customer_id     text NOT NULL,
    effective_at    timestamptz NOT NULL,
    published_at    timestamptz NOT NULL DEFAULT now(),
    republished     integer NOT NULL DEFAULT 0,
    acknowledged_at timestamptz
);
CREATE INDEX instructions_unacknowledged ON entitlements.instructions (published_at)
    WHERE acknowledged_at IS NULL;

-- Counted limits: usage reports (idempotent by their id) summed per customer, feature and period,
-- with the thresholds already raised in that period.
CREATE TABLE entitlements.usage_reports (
    usage_id     text PRIMARY KEY,
    customer_id  text NOT NULL,
    feature      text NOT NULL,
    quantity     bigint NOT NULL,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE entitlements.usage_counters (
    customer_id  text NOT NULL,
    feature      text NOT NULL,
    period_start date NOT NULL,
    used         bigint NOT NULL DEFAULT 0,
    raised       integer[] NOT NULL DEFAULT '{}',   -- thresholds (per cent) already raised this period
    PRIMARY KEY (customer_id, feature, period_start)
);
