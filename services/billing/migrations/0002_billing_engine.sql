-- The billing worker on the domain engine: per-subscription billing state, payments and dunning.

-- The domain's BillingState (JSON), the customer's account credit, the business clock the
-- subscription lives on and the day billing started (grandfathered prices).
ALTER TABLE billing.subscriptions
    ADD COLUMN state          jsonb,
    ADD COLUMN account_credit numeric NOT NULL DEFAULT 0,
    ADD COLUMN clock          text,
    ADD COLUMN started_on     date;

-- Documents keep the domain document (lines with ledger ids) beside the published contract,
-- why they were issued, and their collection: attempts so far, dunning state, when paid.
-- status: invoices open | paid, credit notes issued.
ALTER TABLE billing.documents
    ADD COLUMN reason            text,
    ADD COLUMN document          jsonb,
    ADD COLUMN lifecycle_version integer,
    ADD COLUMN attempts          integer NOT NULL DEFAULT 0,
    ADD COLUMN dunning           jsonb,
    ADD COLUMN paid_on           date;
CREATE INDEX documents_open ON billing.documents (subscription_id) WHERE status = 'open';

-- Every payment result received (the provider's report, once per attempt and outcome).
CREATE TABLE billing.payment_attempts (
    document_number text NOT NULL,
    attempt         integer NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
    failure_reason  text,
    business_date   date NOT NULL,
    event_id        text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_number, attempt, outcome)
);
