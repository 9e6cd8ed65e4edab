"""The one way a worker consumes: inbox, outbox, retry topic, dead letters, parked keys.

For every route (topic -> handler) a worker runs two FastStream subscribers in its group:
- the main topic. A message is processed in one Postgres transaction together with its
  inbox row and the outbox rows of the events it causes; the offset is committed after.
  A permanent failure goes to the DLQ at once; any other failure goes to the retry topic
  and parks the message's key, so later messages of the same subscription follow it into
  the retry topic instead of overtaking it.
- the retry topic. Messages wait for their not-before time, then are retried in place
  with backoff (which keeps their order) up to ``retry_max_attempts`` attempts in all,
  then dead-lettered. Finishing a message unparks its key once nothing else of that key
  is outstanding.
Publishing to the retry topic or the DLQ happens before the offset commit; if even that
fails (broker down), the message is not committed and comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from shared.contracts.envelope import CloudEvent
from shared.db.uow import Database, UnitOfWork
from shared.messaging import metrics
from shared.messaging.errors import UnparseableMessage, is_permanent
from shared.messaging.relay import OutboxRelay
from shared.messaging.topics import dlq_topic, retry_topic
from shared.settings import Settings

log = logging.getLogger("som.runtime")

H_ATTEMPT = "x-retry-attempt"
H_NOT_BEFORE = "x-retry-not-before"
H_PARKED = "x-parked"
H_ORIG_TOPIC = "x-original-topic"
H_ORIG_PARTITION = "x-original-partition"
H_ORIG_OFFSET = "x-original-offset"
H_ORIG_TIMESTAMP = "x-original-timestamp"
H_GROUP = "x-consumer-group"
H_EXC_TYPE = "x-exception-type"
H_EXC_MESSAGE = "x-exception-message"
H_FIRST_FAILURE = "x-first-failure-at"
H_LAST_FAILURE = "x-last-failure-at"
H_DLQ_REASON = "x-dlq-reason"
RUNTIME_HEADERS = frozenset(
    {
        H_ATTEMPT,
        H_NOT_BEFORE,
        H_PARKED,
        H_ORIG_TOPIC,
        H_ORIG_PARTITION,
        H_ORIG_OFFSET,
        H_ORIG_TIMESTAMP,
        H_GROUP,
        H_EXC_TYPE,
        H_EXC_MESSAGE,
        H_FIRST_FAILURE,
        H_LAST_FAILURE,
        H_DLQ_REASON,
    }
)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Incoming:
    """A consumed record as a handler sees it, with its original coordinates."""

    topic: str  # logical topic, without the namespace
    key: str | None
    value: bytes
    headers: dict[str, str]
    partition: int
    offset: int
    timestamp_ms: int
    attempt: int = 1
    first_failure_at: str | None = None

    def cloud_event(self) -> CloudEvent:
        """The record parsed as a CloudEvent; an unparseable one is a permanent failure."""
        try:
            return CloudEvent.model_validate_json(self.value)
        except ValidationError as exc:
            raise UnparseableMessage(f"not a CloudEvent: {exc.errors()[0]['msg']}") from exc


Handler = Callable[[Incoming, UnitOfWork], Awaitable[None]]
EventId = Callable[[Incoming], str]


def cloud_event_id(incoming: Incoming) -> str:
    """Inbox key of a CloudEvent: its ``id`` (the ``ce_id`` header saves parsing twice)."""
    return incoming.headers.get("ce_id") or incoming.cloud_event().id


def content_id(incoming: Incoming) -> str:
    """Inbox key of a foreign payload: a hash of topic and bytes, so a redelivery is recognised."""
    return hashlib.sha256(incoming.topic.encode() + b"\0" + incoming.value).hexdigest()


@dataclass(frozen=True)
class Route:
    """A topic this worker consumes and the handler for it."""

    topic: str
    handler: Handler
    event_id: EventId = cloud_event_id


class ParkedKeys:
    """Keys with a message outstanding in the retry topic; kept in memory and in Postgres."""

    def __init__(self, pool: asyncpg.Pool, group: str) -> None:
        self.pool = pool
        self.group = group
        self.counts: dict[tuple[str, str], int] = {}

    def is_parked(self, topic: str, key: str | None) -> bool:
        """True while an earlier message of this key waits in the retry topic."""
        return key is not None and self.counts.get((topic, key), 0) > 0

    async def park(self, topic: str, key: str | None) -> None:
        """One more message of ``key`` is outstanding."""
        if key is None:
            return
        self.counts[(topic, key)] = self.counts.get((topic, key), 0) + 1
        try:  # best effort: when the database is the thing that is down, memory still parks
            await self.pool.execute(
                "INSERT INTO messaging.parked_keys (consumer_group, topic, key, outstanding) "
                "VALUES ($1, $2, $3, 1) ON CONFLICT (consumer_group, topic, key) "
                "DO UPDATE SET outstanding = messaging.parked_keys.outstanding + 1",
                self.group,
                topic,
                key,
            )
        except Exception:
            log.warning("could not persist parked key %s", key)

    async def release(self, topic: str, key: str | None) -> None:
        """A message of ``key`` left the retry topic (processed or dead-lettered)."""
        if key is None:
            return
        left = self.counts.get((topic, key), 0) - 1
        if left > 0:
            self.counts[(topic, key)] = left
        else:
            self.counts.pop((topic, key), None)
        try:
            status = await self.pool.execute(
                "UPDATE messaging.parked_keys SET outstanding = outstanding - 1 "
                "WHERE consumer_group = $1 AND topic = $2 AND key = $3 AND outstanding > 1",
                self.group,
                topic,
                key,
            )
            if status == "UPDATE 0":
                await self.pool.execute(
                    "DELETE FROM messaging.parked_keys WHERE consumer_group = $1 AND topic = $2 AND key = $3",
                    self.group,
                    topic,
                    key,
                )
        except Exception:
            log.warning("could not persist unparking of %s", key)

    async def load(self) -> None:
        """Restore parked keys after a restart."""
        rows = await self.pool.fetch(
            "SELECT topic, key, outstanding FROM messaging.parked_keys WHERE consumer_group = $1", self.group
        )
        self.counts = {(r["topic"], r["key"]): r["outstanding"] for r in rows}


@dataclass
class WorkerStatus:
    """What the readiness probe reports."""

    started: bool = False
    subscribers: list[Any] = field(default_factory=list)


def _faststream_logger(name: str) -> logging.Logger:
    """FastStream logs every message received and processed at INFO: hot-path noise that costs CPU.

    Our handlers log what matters; FastStream's per-message lines show only when debugging.
    """
    logger = logging.getLogger(f"som.{name}.faststream")
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.WARNING)
    return logger


class Worker:
    """A FastStream Kafka app with the delivery guarantees of this project built in."""

    def __init__(
        self,
        name: str,
        routes: list[Route],
        *,
        settings: Settings,
        db: Database,
        tracer_provider: TracerProvider | None = None,
        background: list[Callable[[], Coroutine[Any, Any, None]]] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.db = db
        self.group = settings.group(name)
        self.namespace = settings.topic_namespace
        self.routes = routes
        self.status = WorkerStatus()
        self.background_factories = background or []
        self._background: list[asyncio.Task[None]] = []
        assert settings.kafka_bootstrap, "kafka_bootstrap must be resolved before building a worker"
        self.broker = KafkaBroker(
            settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=False,  # the embedded broker has no InitProducerId; the outbox is the guarantee
            client_id=f"som-{name}",
            middlewares=(KafkaTelemetryMiddleware(tracer_provider=tracer_provider),),
            graceful_timeout=15.0,
            logger=_faststream_logger(name),
        )
        self.app = FastStream(self.broker, logger=logging.getLogger(f"som.{name}"))
        self.app.on_startup(self._on_startup)
        self.app.after_startup(self._after_startup)
        self.app.on_shutdown(self._on_shutdown)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=False,
            linger_ms=1,
            client_id=f"som-{name}-relay",
        )
        self.relay = OutboxRelay(
            db.pool,
            self.producer,
            f"{self.namespace}{name}",
            poll_seconds=settings.relay_poll_seconds,
            batch_size=settings.relay_batch_size,
        )
        db.after_commit.append(self.relay.signal)
        self.parked = ParkedKeys(db.pool, self.group)
        self._tracer = trace.get_tracer(f"som.{name}")
        self._subscribe_all(routes)

    # -- wiring --------------------------------------------------------------------------

    def _subscribe_all(self, routes: list[Route]) -> None:
        """One consumer for every main topic and one for every retry topic of this worker.

        One member per group (not one per topic): each extra member joining a group makes
        every member rebalance, which on start-up costs seconds per topic.
        """
        by_main = {f"{self.namespace}{r.topic}": r for r in routes}
        by_retry = {retry_topic(t, self.group): r for t, r in by_main.items()}
        common: dict[str, Any] = {
            "auto_offset_reset": "earliest",
            "ack_policy": AckPolicy.NACK_ON_ERROR,
            "max_poll_interval_ms": 300_000,
            "session_timeout_ms": self.settings.consumer_session_timeout_ms,
            "heartbeat_interval_ms": self.settings.consumer_heartbeat_ms,
            "fetch_max_wait_ms": self.settings.consumer_fetch_max_wait_ms,
        }

        async def consume_main(msg: KafkaMessage) -> None:
            rec = cast(ConsumerRecord, msg.raw_message)
            await self._guard(self._on_main(by_main[rec.topic], rec, msg))

        async def consume_retry(msg: KafkaMessage) -> None:
            rec = cast(ConsumerRecord, msg.raw_message)
            await self._guard(self._on_retry(by_retry[rec.topic], rec))

        # Several members in one group: each owns some partitions and processes them in order, so
        # different subscriptions go in parallel while one subscription's messages never overtake.
        for i in range(max(1, self.settings.consumer_concurrency)):

            async def consume(msg: KafkaMessage) -> None:
                await consume_main(msg)

            consume.__name__ = f"{self.name}_main_{i}"
            sub = self.broker.subscriber(*by_main, group_id=self.group, **common)
            sub(consume)
            self.status.subscribers.append(sub)
        consume_retry.__name__ = f"{self.name}_retry"
        s2 = self.broker.subscriber(*by_retry, group_id=f"{self.group}.retry", **common)
        s2(consume_retry)
        self.status.subscribers.append(s2)

    async def _guard(self, work: Awaitable[None]) -> None:
        """Runtime failures (cannot even reach the retry topic) leave the offset uncommitted."""
        try:
            await work
        except Exception:
            log.exception("could not route a failed message; it will be redelivered")
            await asyncio.sleep(1.0)  # no hot loop while the broker is unreachable
            raise

    async def _on_startup(self) -> None:
        await self.producer.start()
        await self.parked.load()
        self.relay.start()

    async def _after_startup(self) -> None:
        self.status.started = True
        for factory in self.background_factories:
            self._background.append(asyncio.create_task(factory()))

    async def _on_shutdown(self) -> None:
        self.status.started = False
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.relay.stop()
        await self.producer.stop()

    async def start(self) -> None:
        """Start in the current event loop (tests and ``som up`` in-process use)."""
        await self._on_startup()
        await self.broker.start()
        await self._after_startup()

    async def stop(self) -> None:
        """Stop consuming, drain the outbox, close clients."""
        await self.broker.stop()
        await self._on_shutdown()

    # -- processing ----------------------------------------------------------------------

    def _incoming(self, route: Route, rec: ConsumerRecord) -> Incoming:
        headers = {k: (v.decode("utf-8", "replace") if v is not None else "") for k, v in rec.headers}
        return Incoming(
            topic=route.topic,
            key=rec.key.decode("utf-8", "replace") if rec.key is not None else None,
            value=rec.value or b"",
            headers=headers,
            partition=rec.partition,
            offset=rec.offset,
            timestamp_ms=rec.timestamp,
        )

    async def _on_main(self, route: Route, rec: ConsumerRecord, msg: Any) -> None:
        incoming = self._incoming(route, rec)
        with contextlib.suppress(Exception):  # a metric read must never fail a message
            lag = msg.consumer.highwater(TopicPartition(rec.topic, rec.partition))
            if lag is not None:
                metrics.CONSUMER_LAG.labels(self.name, route.topic, str(rec.partition)).set(
                    max(0, lag - rec.offset - 1)
                )
        if self.parked.is_parked(route.topic, incoming.key):
            # An earlier message of this subscription is in retry: queue behind it, keep order.
            await self._to_retry(route, incoming, None, parked=True)
            return
        try:
            await self._process(route, incoming)
        except Exception as exc:
            await self._fail(route, incoming, exc)

    async def _on_retry(self, route: Route, rec: ConsumerRecord) -> None:
        raw = self._incoming(route, rec)
        h = raw.headers
        incoming = replace(
            raw,
            headers={k: v for k, v in h.items() if k not in RUNTIME_HEADERS},
            partition=int(h.get(H_ORIG_PARTITION, raw.partition)),
            offset=int(h.get(H_ORIG_OFFSET, raw.offset)),
            timestamp_ms=int(h.get(H_ORIG_TIMESTAMP, raw.timestamp_ms)),
            attempt=int(h.get(H_ATTEMPT, "0")) + 1,
            first_failure_at=h.get(H_FIRST_FAILURE),
        )
        delay = int(h.get(H_NOT_BEFORE, "0")) / 1000 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            while True:
                try:
                    await self._process(route, incoming)
                    return
                except Exception as exc:
                    if is_permanent(exc) or incoming.attempt >= self.settings.retry_max_attempts:
                        await self._dead_letter(route, incoming, exc)
                        return
                    metrics.RETRIES.labels(self.name, route.topic).inc()
                    log.warning(
                        "attempt %d of %s failed (%s); retrying in place",
                        incoming.attempt,
                        route.topic,
                        type(exc).__name__,
                    )
                    await asyncio.sleep(self._backoff(incoming.attempt))
                    incoming = replace(
                        incoming,
                        attempt=incoming.attempt + 1,
                        first_failure_at=incoming.first_failure_at or _now_iso(),
                    )
        finally:
            await self.parked.release(route.topic, incoming.key)

    async def _process(self, route: Route, incoming: Incoming) -> None:
        started = time.perf_counter()
        event_id = route.event_id(incoming)
        async with self.db.unit_of_work(self.name) as uow:
            if not await uow.claim(self.group, event_id, route.topic):
                metrics.PROCESSED.labels(self.name, route.topic, "duplicate").inc()
                return
            await route.handler(incoming, uow)
        metrics.PROCESSED.labels(self.name, route.topic, "ok").inc()
        metrics.HANDLER_SECONDS.labels(self.name, route.topic).observe(time.perf_counter() - started)

    async def _fail(self, route: Route, incoming: Incoming, exc: Exception) -> None:
        metrics.FAILURES.labels(self.name, route.topic, type(exc).__name__).inc()
        if is_permanent(exc):
            await self._dead_letter(route, incoming, exc)
        else:
            log.warning("transient failure on %s (%s): to retry", route.topic, exc)
            await self._to_retry(route, incoming, exc, parked=False)

    def _backoff(self, attempt: int) -> float:
        steps = self.settings.retry_backoff_seconds or (1.0,)
        return steps[min(max(attempt - 1, 0), len(steps) - 1)]

    def _failure_headers(self, incoming: Incoming, exc: Exception | None) -> dict[str, str]:
        now = _now_iso()
        h = dict(incoming.headers)
        h.update(
            {
                H_ORIG_TOPIC: f"{self.namespace}{incoming.topic}",
                H_ORIG_PARTITION: str(incoming.partition),
                H_ORIG_OFFSET: str(incoming.offset),
                H_ORIG_TIMESTAMP: str(incoming.timestamp_ms),
                H_GROUP: self.group,
                H_ATTEMPT: str(incoming.attempt),
            }
        )
        if exc is not None:
            h[H_EXC_TYPE] = f"{type(exc).__module__}.{type(exc).__qualname__}"
            h[H_EXC_MESSAGE] = str(exc)[:1000]
            h[H_FIRST_FAILURE] = incoming.first_failure_at or now
            h[H_LAST_FAILURE] = now
        return h

    async def _send(self, topic: str, incoming: Incoming, headers: dict[str, str]) -> None:
        await asyncio.wait_for(
            self.producer.send_and_wait(
                topic,
                value=incoming.value,
                key=incoming.key.encode() if incoming.key is not None else None,
                headers=[(k, v.encode()) for k, v in headers.items()],
            ),
            timeout=30,
        )

    async def _to_retry(
        self, route: Route, incoming: Incoming, exc: Exception | None, *, parked: bool
    ) -> None:
        headers = self._failure_headers(incoming, exc)
        if parked:
            headers[H_ATTEMPT] = str(incoming.attempt - 1)  # not failed yet: its first attempt is still due
            headers[H_PARKED] = "1"
            headers[H_NOT_BEFORE] = "0"
        else:
            headers[H_NOT_BEFORE] = str(int((time.time() + self._backoff(incoming.attempt)) * 1000))
            metrics.RETRIES.labels(self.name, route.topic).inc()
        await self._send(retry_topic(f"{self.namespace}{route.topic}", self.group), incoming, headers)
        await self.parked.park(route.topic, incoming.key)

    async def _dead_letter(self, route: Route, incoming: Incoming, exc: Exception) -> None:
        headers = self._failure_headers(incoming, exc)
        headers[H_DLQ_REASON] = "permanent" if is_permanent(exc) else "retries_exhausted"
        await self._send(dlq_topic(f"{self.namespace}{route.topic}", self.group), incoming, headers)
        metrics.DEAD_LETTERS.labels(self.name, route.topic).inc()
        log.error(
            "dead-lettered %s[%d]@%d after %d attempt(s): %s: %s",
            route.topic,
            incoming.partition,
            incoming.offset,
            incoming.attempt,
            type(exc).__name__,
            exc,
        )

    # -- health ------------------------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        """Broker connected, database reachable, partitions assigned."""
        checks = {"started": self.status.started}
        try:
            checks["broker"] = bool(await self.broker.ping(timeout=2.0))
        except Exception:
            checks["broker"] = False
        try:
            checks["database"] = await asyncio.wait_for(self.db.pool.fetchval("SELECT 1"), 2.0) == 1
        except Exception:
            checks["database"] = False
        assigned = False
        for sub in self.status.subscribers:
            consumer = getattr(sub, "consumer", None)
            if consumer is not None and consumer.assignment():
                assigned = True
        checks["partitions_assigned"] = assigned
        return checks
