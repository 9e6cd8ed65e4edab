"""On a real broker: fetches stop naming a quiet partition while another is busy, and a record
that then arrives on the quiet partition is still delivered (at the next sweep)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.protocol.fetch import FetchRequest

from shared.messaging.admin import ensure_topics
from shared.messaging.fetch_focus import focus_fetches
from shared.messaging.topics import TopicSpec
from shared.settings import Settings


async def test_quiet_partition_is_swept_not_fetched_every_time(settings: Settings) -> None:
    bootstrap = str(settings.kafka_bootstrap)
    topic = f"{settings.topic_namespace}focus.{uuid.uuid4().hex[:6]}"
    await ensure_topics(bootstrap, [TopicSpec(topic, 2)])
    busy, quiet = TopicPartition(topic, 0), TopicPartition(topic, 1)

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    consumer.assign([busy, quiet])
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    named: Counter[int] = Counter()
    real_send = consumer._client.send

    async def counting_send(node_id: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(request, FetchRequest):
            named.update(p for t, parts in request.topics if t == topic for p, _, _ in parts)
        return await real_send(node_id, request, *args, **kwargs)

    consumer._client.send = counting_send  # type: ignore[method-assign]
    try:
        await consumer.seek_to_beginning(busy, quiet)
        assert focus_fetches(consumer, quiet_after=0.2, sweep_every=1.0)
        assert focus_fetches(consumer, quiet_after=0.2, sweep_every=1.0)  # a second call changes nothing

        received: list[tuple[int, bytes]] = []

        async def consume() -> None:
            while True:
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    received.extend((tp.partition, r.value or b"") for r in records)

        reader = asyncio.create_task(consume())
        for i in range(150):  # a steady stream on the busy partition for about 3 s
            await producer.send_and_wait(topic, f"b{i}".encode(), partition=0)
            await asyncio.sleep(0.02)
        await producer.send_and_wait(topic, b"late", partition=1)
        for _ in range(300):
            if (1, b"late") in received and len([r for r in received if r[0] == 0]) == 150:
                break
            await asyncio.sleep(0.05)
        reader.cancel()
        assert (1, b"late") in received, "a record on the quiet partition was never delivered"
        assert [v for p, v in received if p == 0] == [f"b{i}".encode() for i in range(150)]
        print(f"fetches naming the busy partition {named[0]}, the quiet one {named[1]}")
        # The quiet partition is named while new (0.2 s) and about once a second after that.
        assert named[1] * 2 < named[0], named
    finally:
        await producer.stop()
        await consumer.stop()
