-- A dead letter's origin (consumer group, original topic, partition, offset) names the failed
-- message; the DLQ can hold more than one copy of it (the send to the DLQ is at-least-once: a
-- worker killed after the send and before its offset commit reads the message again and sends it
-- again). A replay is recorded against the origin too, so no copy of a replayed message is
-- replayed again without --force.
ALTER TABLE messaging.dlq_replays ADD COLUMN origin text;
CREATE UNIQUE INDEX dlq_replays_origin ON messaging.dlq_replays (origin) WHERE origin IS NOT NULL;
