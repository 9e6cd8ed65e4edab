-- Replenishment subscriptions (physical goods at a cadence): billing keeps each one's cycle
-- state (next due date, cycles run and skipped, last unit price for the cap), and the SKU
-- price list fed by pricing.updated (every entry kept, the one in force is chosen per cycle).

CREATE TABLE billing.replenishments (
    subscription_id text PRIMARY KEY,
    customer_id     text NOT NULL,
    state           jsonb NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE billing.price_list (
    sku          text        NOT NULL,
    currency     text        NOT NULL,
    effective_at timestamptz NOT NULL,
    unit_amount  numeric     NOT NULL CHECK (unit_amount > 0),
    event_id     text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, currency, effective_at)
);
