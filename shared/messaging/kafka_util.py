"""Small aiokafka helpers the CLI, the services' tools and the tests share."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition


async def topic_partitions(
    consumer: AIOKafkaConsumer, topic: str, *, refreshes: int = 50, pause: float = 0.1
) -> list[TopicPartition]:
    """The partitions of ``topic`` in order, or ``[]`` when it is still unknown after ``refreshes``.

    A fresh consumer knows only the metadata it fetched at start; a topic created since (or not yet
    propagated) shows no partitions until the metadata is refreshed. aiokafka has no public call for
    that, hence the one use of its private client here.
    """
    parts = consumer.partitions_for_topic(topic)
    for _ in range(refreshes):
        if parts:
            break
        await consumer._client.force_metadata_update()
        if pause:
            await asyncio.sleep(pause)
        parts = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(parts or ())]
