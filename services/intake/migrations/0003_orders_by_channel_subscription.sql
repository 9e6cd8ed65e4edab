-- What intake already knows of a channel subscription (its latest order) is looked up by the
-- channel id inside the canonical document: snapshots (FORMATS.md 8a rule 9) and cancellations.
CREATE INDEX IF NOT EXISTS orders_by_channel_subscription
    ON intake.orders (channel, (canonical->>'channel_subscription_id'), received_at DESC);
