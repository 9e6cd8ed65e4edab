"""Outbox relay: publishes committed outbox rows to Kafka, in id order, deleting them in the same transaction.

Woken right after each commit (latency), and polling as the safety net (a row left
behind by a crashed worker is published within ``poll_seconds``). One relay per
service publishes at a time (transaction-scoped advisory lock), which keeps per-key
order. The rows are deleted before the publish and the deletion commits after the broker
acknowledged it, so a failed publish leaves them in place; a crash after the publish and
before the commit publishes a row twice: consumers' inboxes make that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from shared.aio import cancel_and_wait
from shared.db.uow import decode_headers
from shared.messaging.errors import is_outage
from shared.messaging.kafka_util import partition_for
from shared.telemetry import kafka_span_attributes, spans_recorded

log = logging.getLogger("som.relay")
_tracer = trace.get_tracer("som.relay")


class OutboxRelay:
    """Drains ``messaging.outbox`` rows of one service."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        service: str,
        *,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        send_timeout: float = 30.0,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.service = service
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.send_timeout = send_timeout
        self.published = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._down = False  # a dependency is unreachable: said once, not every poll

    def signal(self, service: str | None = None) -> None:
        """Wake the relay (called after a commit that wrote outbox rows)."""
        if service is None or service == self.service:
            self._wake.set()

    def start(self) -> None:
        """Run the relay loop in the background."""
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        """Stop the loop after a last drain attempt."""
        if self._task:
            await cancel_and_wait([self._task], timeout=10, log=log, owner=f"outbox relay of {self.service}")
            self._task = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.drain()

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that arrives with a
            # wake-up, and stop() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.drain()
                if self._down:
                    log.warning("outbox relay of %s: publishing again", self.service)
                self._down = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next wake or poll tries again; rows stay in the outbox
                if not is_outage(exc):
                    log.exception("outbox relay failed; will retry")
                elif not self._down:
                    log.warning("outbox relay of %s paused: %s unreachable", self.service, type(exc).__name__)
                self._down = self._down or is_outage(exc)
                await asyncio.sleep(min(self.poll_seconds, 1.0))

    async def drain(self) -> int:
        """Publish until the outbox of this service is empty; returns rows published."""
        total = 0
        while True:
            n = await self.publish_batch()
            if n < 0:  # another relay of this service holds the lock: try again shortly
                await asyncio.sleep(0.05)
                continue
            total += n
            if n < self.batch_size:
                return total

    async def publish_batch(self) -> int:
        """Publish one batch; -1 if another relay of this service is publishing."""
        async with self.pool.acquire() as conn, conn.transaction():
            # The lock, the claim and the delete in one statement (one round trip before publishing).
            # The rows come back if the publish fails: the transaction rolls back. Ordered by
            # (service, id), the primary key's order: with statistics taken while one service had
            # all the rows, "ORDER BY id" (then an id index) walked every service's live and dead
            # rows and a claim took seconds (20,000-order bench).
            # The batch is a range (up to the LIMIT's last id), found by a subquery that runs once:
            # "id IN (subquery)" let a planner that took the queue for empty (analysed just after a
            # drain) re-run the subquery for every row of the outbox: 0.15-3 s a claim, 79 % of the
            # statement time of a fresh 8,000-order bench (som bench --db-stats). One snapshot serves
            # the statement, so the range holds exactly the batch.
            found = await conn.fetch(
                "WITH lock AS (SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok), "
                "gone AS (DELETE FROM messaging.outbox WHERE service = $2 AND id <= "
                "(SELECT max(b.id) FROM (SELECT o.id FROM messaging.outbox o WHERE (SELECT ok FROM lock) "
                "AND o.service = $2 ORDER BY o.service, o.id LIMIT $3) AS b) "
                "RETURNING id, topic, key, value, headers) "
                "SELECT lock.ok, gone.* FROM lock LEFT JOIN gone ON true ORDER BY gone.id",
                f"outbox:{self.service}",
                self.service,
                self.batch_size,
            )
            if not found[0]["ok"]:
                return -1
            rows = [r for r in found if r["id"] is not None]
            if not rows:
                return 0
            futures = await self._hand_over(rows)
            async with asyncio.timeout(self.send_timeout):
                await asyncio.gather(*futures)
        self.published += len(rows)
        return len(rows)

    async def _hand_over(self, rows: list[asyncpg.Record]) -> list[asyncio.Future[Any]]:
        """Hand the rows to the producer as one record batch per partition, in row order.

        Batches built here, not one ``send`` per row: each send is a coroutine, a partitioner
        call, an accumulator lookup and a future of its own (11 % of billing's CPU, whose invoice
        comes with its journal entries and payment request). A partition's batches are queued in
        order and the producer keeps one in flight per partition, so per-key order holds. The
        futures resolve when the broker acknowledged each batch.
        """
        traced = spans_recorded()
        partitions: dict[str, list[int]] = {}
        open_batches: dict[tuple[str, int], Any] = {}
        futures: list[asyncio.Future[Any]] = []
        for row in rows:
            topic = row["topic"]
            headers = decode_headers(row["headers"])
            if traced:  # untraced, the row's headers carry its trace context on as they are
                self._trace_send(topic, row["key"], headers)
            parts = partitions.get(topic)
            if parts is None:
                parts = partitions[topic] = sorted(await self.producer.partitions_for(topic))
            key = row["key"].encode() if row["key"] is not None else None
            partition = partition_for(key, parts)
            record = {
                "timestamp": None,
                "key": key,
                "value": bytes(row["value"]),
                "headers": [(k, v.encode()) for k, v in headers.items()],
            }
            batch = open_batches.get((topic, partition))
            if batch is None or batch.append(**record) is None:
                if batch is not None:  # full: queue it, the record starts the next one
                    futures.append(await self._submit(batch, topic, partition))
                batch = open_batches[topic, partition] = self.producer.create_batch()
                batch.append(**record)  # a batch always takes its first record, whatever its size
        for (topic, partition), batch in open_batches.items():
            futures.append(await self._submit(batch, topic, partition))
        return futures

    async def _submit(self, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        # Closed, it is sent at once (no linger) and no other send can add to it.
        batch.close()
        future: asyncio.Future[Any] = await self.producer.send_batch(batch, topic, partition=partition)
        return future

    @staticmethod
    def _trace_send(topic: str, key: str | None, headers: dict[str, str]) -> None:
        """A producer span for the row, its context injected into the row's headers."""
        with _tracer.start_as_current_span(
            f"send {topic}",
            context=propagate.extract(headers),
            kind=SpanKind.PRODUCER,
            attributes=kafka_span_attributes("send", topic, key, headers.get("ce_id", "")),
        ):
            propagate.inject(headers)
