"""The end-of-topic helper returns the true end where a "latest offset" request may not."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.messaging.admin import ensure_topics
from shared.messaging.offsets import end_offsets, partitions_of, read_to_end
from shared.messaging.topics import TopicSpec
from shared.settings import Settings

BATCHES, PER_BATCH = 4, 5


async def _publish_batches(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for b in range(BATCHES):
            batch = producer.create_batch()
            for i in range(PER_BATCH):
                assert batch.append(key=None, value=f"{b}-{i}".encode(), timestamp=None) is not None
            batch.close()
            fut = await producer.send_batch(batch, topic, partition=0)
            await fut
    finally:
        await producer.stop()


async def test_true_end_of_a_partition_written_in_batches(settings: Settings) -> None:
    """Several multi-record batches: the helper finds offset 20 and reads every record."""
    bootstrap = str(settings.kafka_bootstrap)
    topic = f"{settings.topic_namespace}offsets.{uuid.uuid4().hex[:6]}"
    await ensure_topics(bootstrap, [TopicSpec(topic, 1)])
    await _publish_batches(bootstrap, topic)
    tp = TopicPartition(topic, 0)
    total = BATCHES * PER_BATCH

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        broker_answer = (await consumer.end_offsets([tp]))[tp]
        ends = await end_offsets(consumer, [tp])
        assert ends[tp] == total
        # Tansu answers the start of the last batch + 1; Kafka answers the true end. Never more.
        assert broker_answer <= total
        print(f"end_offsets says {broker_answer}, true end {total}")

        seen: list[ConsumerRecord] = []
        await consumer.seek_to_beginning(tp)
        ends = await read_to_end(consumer, [tp], seen.append)
        assert ends[tp] == total
        assert [r.value for r in seen] == [
            f"{b}-{i}".encode() for b in range(BATCHES) for i in range(PER_BATCH)
        ]
    finally:
        await consumer.stop()


async def test_empty_partition_ends_at_zero(settings: Settings) -> None:
    """An empty partition is at its end at once."""
    bootstrap = str(settings.kafka_bootstrap)
    topic = f"{settings.topic_namespace}offsets.empty"
    await ensure_topics(bootstrap, [TopicSpec(topic, 2)])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        assert await end_offsets(consumer, tps) == {tps[0]: 0, tps[1]: 0}
    finally:
        await consumer.stop()


async def test_partitions_of_named_topics_only_and_never_creates_one(settings: Settings) -> None:
    """A topic made after the client started is found; a name that does not exist stays absent."""
    bootstrap = str(settings.kafka_bootstrap)
    made = f"{settings.topic_namespace}offsets.{uuid.uuid4().hex[:6]}"
    missing = f"{settings.topic_namespace}offsets.missing-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await ensure_topics(bootstrap, [TopicSpec(made, 3)])  # after the client's start
        found = await partitions_of(consumer, [made, missing, made])
        assert found == [TopicPartition(made, p) for p in range(3)]
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            assert missing not in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        await consumer.stop()
