CREATE SCHEMA IF NOT EXISTS intake;

-- Customers known to order management, with their credit standing.
CREATE TABLE intake.customers (
    customer_id   text PRIMARY KEY,          -- internal id
    channel       text NOT NULL,
    channel_customer_id text NOT NULL,
    email         text,
    name          text,
    country       text,
    credit_hold   boolean NOT NULL DEFAULT false,
    credit_limit  numeric,                   -- NULL = no limit
    currency      text,
    tax_exempt    boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, channel_customer_id)
);

-- Channel subscription ids mapped onto internal subscription ids; several channel ids can
-- point at one subscription (a STACKIT plan change or an AWS renewal issues a new id).
CREATE TABLE intake.channel_subscriptions (
    channel                 text NOT NULL,
    channel_subscription_id text NOT NULL,
    subscription_id         text NOT NULL,
    replaced_by             text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, channel_subscription_id)
);
CREATE INDEX channel_subscriptions_by_subscription ON intake.channel_subscriptions (subscription_id);

-- Every order change accepted, keyed by its channel identity: the same channel order seen
-- again, however much later, has no second effect.
CREATE TABLE intake.orders (
    channel         text NOT NULL,
    order_key       text NOT NULL,
    subscription_id text NOT NULL,
    action          text NOT NULL,
    canonical       jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, order_key)
);

CREATE TABLE intake.rejections (
    id                      bigserial PRIMARY KEY,
    channel                 text NOT NULL,
    channel_subscription_id text,
    channel_event_id        text,
    reasons                 jsonb NOT NULL,
    impact_score            numeric NOT NULL,
    order_value             numeric,
    currency                text,
    received_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejections_by_impact ON intake.rejections (received_at DESC, impact_score DESC);

CREATE TABLE intake.dropped (
    id          bigserial PRIMARY KEY,
    channel     text NOT NULL,
    disposition text NOT NULL,
    reason      text,
    received_at timestamptz NOT NULL DEFAULT now()
);
