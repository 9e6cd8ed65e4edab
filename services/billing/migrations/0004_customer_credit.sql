-- The customer credit ledger: account credit is the customer's (per currency), not one
-- subscription's. A credit note settled to account credit adds to it at once; any later
-- invoice of any of the customer's subscriptions consumes it. Every change is a movement.

CREATE TABLE billing.customer_credit (
    customer_id text    NOT NULL,
    currency    text    NOT NULL,
    balance     numeric NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, currency)
);

-- kind: opening (carried over from per-subscription credit), credit_note (credit added),
-- applied (consumed by an invoice), refund (a credit note paid back: no balance change).
CREATE TABLE billing.credit_movements (
    id              bigserial PRIMARY KEY,
    customer_id     text    NOT NULL,
    currency        text    NOT NULL,
    kind            text    NOT NULL CHECK (kind IN ('opening', 'credit_note', 'applied', 'refund')),
    amount          numeric NOT NULL,
    balance_after   numeric NOT NULL CHECK (balance_after >= 0),
    subscription_id text,
    document_number text,
    business_date   date,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_movements_customer ON billing.credit_movements (customer_id, currency, id);

-- Credit kept per subscription before this migration becomes the customer's.
INSERT INTO billing.customer_credit (customer_id, currency, balance)
SELECT snapshot -> 'customer' ->> 'customer_id', upper(snapshot ->> 'currency'), sum(account_credit)
FROM billing.subscriptions
WHERE account_credit > 0
GROUP BY 1, 2;
INSERT INTO billing.credit_movements (customer_id, currency, kind, amount, balance_after)
SELECT customer_id, currency, 'opening', balance, balance FROM billing.customer_credit;
