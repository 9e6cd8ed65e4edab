-- STACKIT poller: the last snapshot of every polled subscription (STACKIT has no webhooks, so a
-- change is what differs from this snapshot), and the approval decision taken for it.
CREATE TABLE intake.stackit_snapshots (
    namespace        text NOT NULL DEFAULT '',   -- topic namespace of the polling worker set
    project_id       text NOT NULL,              -- the vendor's STACKIT project
    subscription_id  text NOT NULL,              -- STACKIT subscriptionId
    lifecycle_state  text,
    snapshot         jsonb NOT NULL,
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    changed_at       timestamptz NOT NULL DEFAULT now(),
    decision         text,                       -- approved | rejected | manual (left to an operator)
    decision_reasons jsonb,
    decided_at       timestamptz,
    PRIMARY KEY (namespace, project_id, subscription_id)
);
