"""Helpers for integration tests: read a topic from the start, run workers, publish orders."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from services.registry import WORKERS, build_worker
from shared.db.uow import Database
from shared.messaging.kafka_util import topic_partitions
from shared.messaging.runtime import Worker
from shared.settings import Settings


def som_env(**settings: str) -> dict[str, str]:
    """This process's environment for a ``som`` child, without this machine's ``SOM_*`` settings
    (a child must not reach a broker or database the developer configured), plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOM_")}
    env.update(settings)
    return env


class TopicReader:
    """Collects every record of a topic from offset 0 (no consumer group: sees everything)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.records: list[ConsumerRecord] = []

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        tps = await topic_partitions(self.consumer, self.topic)
        assert tps, f"topic {self.topic} has no partitions"
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self, timeout: float = 0.2) -> None:
        """Fetch whatever arrived."""
        batch = await self.consumer.getmany(timeout_ms=int(timeout * 1000))
        for recs in batch.values():
            self.records.extend(recs)

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[ConsumerRecord]:
        """Wait until at least ``count`` records arrived (then return them all)."""
        deadline = time.monotonic() + timeout
        while len(self.records) < count and time.monotonic() < deadline:
            await self.poll()
        return self.records

    async def settle(self, seconds: float = 1.5) -> list[ConsumerRecord]:
        """Keep reading for ``seconds`` more, to catch anything that should not arrive."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.poll()
        return self.records

    def values(self) -> list[dict[str, Any]]:
        """Record values parsed as JSON."""
        return [json.loads(r.value) for r in self.records]


@asynccontextmanager
async def running_workers(
    settings: Settings, db: Database, names: Iterable[str] = WORKERS
) -> AsyncIterator[dict[str, Worker]]:
    """Start workers in this event loop; stop them on exit."""
    started: dict[str, Worker] = {}
    try:
        built = {name: build_worker(name, settings, db) for name in names}
        await asyncio.gather(*(w.start() for w in built.values()))  # group joins overlap
        started.update(built)
        yield started
    finally:
        for w in reversed(list(started.values())):
            await w.stop()


async def publish(
    settings: Settings,
    topic: str,
    value: bytes | dict[str, Any],
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Publish one record to ``topic`` inside the test's namespace."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        await producer.send_and_wait(
            f"{settings.topic_namespace}{topic}",
            value=body,
            key=key.encode() if key else None,
            headers=[(k, v.encode()) for k, v in (headers or {}).items()],
        )
    finally:
        await producer.stop()
