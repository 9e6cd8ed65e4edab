"""Dead-letter queues: list what is in them, replay records to their original topic once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.messaging.incoming import failure_origin
from shared.messaging.kafka_util import topic_partitions
from shared.messaging.offsets import read_to_end
from shared.messaging.runtime import RUNTIME_HEADERS
from shared.messaging.topics import is_dlq
from shared.messaging.views import record_replay, replayed_dead_letters


@dataclass
class DeadLetter:
    """One DLQ record with its failure context."""

    dlq_topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str]
    replayed: bool = False
    copy_of: int | None = None  # offset of an earlier record in this DLQ with the same origin

    @property
    def original_topic(self) -> str:
        return self.headers.get("x-original-topic", "")

    @property
    def awaits_replay(self) -> bool:
        """Neither this record nor another copy of its failed message was replayed, and it is the
        first copy: what ``--all`` replays and the console counts as open."""
        return not self.replayed and self.copy_of is None

    @property
    def origin(self) -> str | None:
        """The failed message this record is a copy of (see ``failure_origin``)."""
        return failure_origin(self.headers)

    def summary(self) -> dict[str, object]:
        """What an operator needs to decide, as JSON-ready data."""
        h = self.headers
        return {
            "dlq_topic": self.dlq_topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "original_topic": self.original_topic,
            "original_partition": h.get("x-original-partition"),
            "original_offset": h.get("x-original-offset"),
            "consumer_group": h.get("x-consumer-group"),
            "reason": h.get("x-dlq-reason"),
            "error_type": h.get("x-exception-type"),
            "error_message": h.get("x-exception-message"),
            "attempts": h.get("x-retry-attempt"),
            "first_failure_at": h.get("x-first-failure-at"),
            "last_failure_at": h.get("x-last-failure-at"),
            "replayed": self.replayed,
            "copy_of_offset": self.copy_of,
            "payload_preview": self.value[:120].decode("utf-8", "replace"),
        }


async def dlq_topics(bootstrap: str, namespace: str = "") -> list[str]:
    """Every dead-letter topic in the namespace."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="som-dlq")
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    return sorted(t for t in names if is_dlq(t) and t.startswith(namespace))


async def read_dead_letters(bootstrap: str, topics: list[str], pool: asyncpg.Pool | None) -> list[DeadLetter]:
    """Every record currently in ``topics`` (read from the start to the true end)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        tps: list[TopicPartition] = []
        for t in topics:
            # One metadata refresh at most: these topics exist or were named by hand.
            tps.extend(await topic_partitions(consumer, t, refreshes=1, pause=0))
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)

        def _collect(r: ConsumerRecord) -> None:
            letters.append(
                DeadLetter(
                    dlq_topic=r.topic,
                    partition=r.partition,
                    offset=r.offset,
                    key=r.key.decode("utf-8", "replace") if r.key is not None else None,
                    value=r.value or b"",
                    headers={k: v.decode("utf-8", "replace") for k, v in r.headers},
                )
            )

        # To the true end: the broker's "latest offset" can stop short on Tansu.
        await read_to_end(consumer, tps, _collect)
    finally:
        await consumer.stop()
    mark_copies(letters)
    if pool is not None and letters:
        done, done_origins = await replayed_dead_letters(pool)
        for letter in letters:
            letter.replayed = (letter.dlq_topic, letter.partition, letter.offset) in done or (
                letter.origin is not None and letter.origin in done_origins
            )
    return letters


def mark_copies(letters: list[DeadLetter]) -> None:
    """Set ``copy_of`` on every record whose failed message (origin) an earlier record of the same
    DLQ partition already holds: the DLQ send is at-least-once, so one failure may be there twice."""
    first: dict[tuple[str, int, str], int] = {}
    for letter in letters:
        origin = letter.origin
        if origin is None:
            continue  # no origin headers: never taken for a copy of anything
        where = (letter.dlq_topic, letter.partition, origin)
        if where in first:
            letter.copy_of = first[where]
        else:
            first[where] = letter.offset


class AlreadyReplayed(Exception):
    """The record was replayed before; replaying again needs ``force``."""


async def replay(
    bootstrap: str,
    pool: asyncpg.Pool,
    letter: DeadLetter,
    *,
    payload: Path | None = None,
    payload_bytes: bytes | None = None,
    force: bool = False,
) -> str:
    """Publish the record (or a corrected payload) to its original topic; returns that topic.

    The replay is recorded first, in the same transaction that is committed only after the
    broker acknowledged the publish, so a record is replayed once, and so is each failed message
    when the DLQ holds two copies of it; consumers' inboxes make even a forced second replay of
    the same bytes a no-op (for messages with an event id).
    """
    target = letter.original_topic
    if not target:
        raise ValueError(
            f"record {letter.dlq_topic}[{letter.partition}]@{letter.offset} has no original topic"
        )
    if payload_bytes is not None:  # an edited payload (the console)
        value = payload_bytes
    else:
        value = await asyncio.to_thread(payload.read_bytes) if payload else letter.value
    headers = {k: v for k, v in letter.headers.items() if k not in RUNTIME_HEADERS}
    headers["x-replayed-from"] = f"{letter.dlq_topic}/{letter.partition}/{letter.offset}"
    async with pool.acquire() as conn, conn.transaction():
        inserted = await record_replay(
            conn, letter.dlq_topic, letter.partition, letter.offset, target, letter.origin
        )
        if not inserted and not force:
            raise AlreadyReplayed(
                f"{letter.dlq_topic}[{letter.partition}]@{letter.offset} was replayed before "
                "(this record or another copy of the same failed message)"
            )
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                target,
                value=value,
                key=letter.key.encode() if letter.key is not None else None,
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
        finally:
            await producer.stop()
    return target
