CREATE SCHEMA IF NOT EXISTS billing;

-- Gapless document numbers: the counter row is locked by the issuing transaction and a
-- rollback restores it, so no number is skipped or used twice.
CREATE TABLE billing.document_sequences (
    series     text PRIMARY KEY,
    next_value bigint NOT NULL
);
INSERT INTO billing.document_sequences (series, next_value) VALUES ('INV', 1), ('CN', 1);

CREATE TABLE billing.documents (
    document_number text PRIMARY KEY,
    document_type   text NOT NULL CHECK (document_type IN ('invoice', 'credit_note')),
    subscription_id text NOT NULL,
    customer_id     text NOT NULL,
    currency        text NOT NULL,
    issue_date      date NOT NULL,
    due_date        date NOT NULL,
    subtotal        numeric NOT NULL,
    tax             numeric NOT NULL,
    total           numeric NOT NULL,
    amount_due      numeric NOT NULL,
    status          text NOT NULL DEFAULT 'open',
    body            jsonb NOT NULL,
    cause_event_id  text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX documents_by_subscription ON billing.documents (subscription_id, issue_date);

-- What billing knows of each subscription: the last lifecycle version applied and the
-- snapshot it billed from (proration needs what was actually charged).
CREATE TABLE billing.subscriptions (
    subscription_id   text PRIMARY KEY,
    lifecycle_version integer NOT NULL,
    snapshot          jsonb NOT NULL,
    charged_through   date,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
