-- Delivery guarantees: inbox (effect once per consumer group), outbox (events commit with state),
-- parked keys (per-subscription order while a message waits in retry), DLQ replays.
CREATE SCHEMA IF NOT EXISTS messaging;

CREATE TABLE messaging.inbox (
    consumer_group text        NOT NULL,
    event_id       text        NOT NULL,
    topic          text        NOT NULL,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);

CREATE TABLE messaging.outbox (
    id          bigserial   PRIMARY KEY,
    service     text        NOT NULL,
    topic       text        NOT NULL,
    key         text,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_service_id ON messaging.outbox (service, id);

CREATE TABLE messaging.parked_keys (
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    key            text NOT NULL,
    outstanding    integer NOT NULL CHECK (outstanding >= 0),
    parked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, key)
);

CREATE TABLE messaging.dlq_replays (
    dlq_topic     text        NOT NULL,
    dlq_partition integer     NOT NULL,
    dlq_offset    bigint      NOT NULL,
    replayed_at   timestamptz NOT NULL DEFAULT now(),
    replayed_to   text        NOT NULL,
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);
