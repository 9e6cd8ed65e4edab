-- Outbound fulfilment: one row per vendor call a lifecycle change asks for (activate, PATCH an
-- operation, approve or reject, final metering). Recorded in the transaction that consumed the
-- lifecycle event; the delivery task makes the call and records the acknowledgement.
-- The unique key makes a redelivered event record nothing new and gives an operation one decision.
CREATE TABLE intake.vendor_calls (
    id                      bigserial PRIMARY KEY,
    namespace               text NOT NULL DEFAULT '',   -- topic namespace of the worker set
    channel                 text NOT NULL,
    operation_id            text NOT NULL,
    action                  text NOT NULL,               -- kind of call, not its verdict
    subscription_id         text NOT NULL,
    channel_subscription_id text NOT NULL,
    body                    jsonb NOT NULL DEFAULT '{}',
    deadline                timestamptz,                 -- when the vendor stops waiting
    state                   text NOT NULL DEFAULT 'pending',  -- pending | in_flight | acked | failed | deadline_missed
    attempts                integer NOT NULL DEFAULT 0,
    next_attempt_at         timestamptz NOT NULL DEFAULT now(),
    claimed_at              timestamptz,
    acked_at                timestamptz,
    response                jsonb,
    last_error              text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, channel, operation_id, action)
);
CREATE INDEX vendor_calls_due ON intake.vendor_calls (namespace, next_attempt_at)
    WHERE state IN ('pending', 'in_flight');
