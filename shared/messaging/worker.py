"""The one way a worker consumes: batches by partition lane, inbox, outbox, retry topic, dead letters.

For every route (topic -> handler) a worker runs two FastStream subscribers in its group:
- the main topics, consumed in batches (up to ``consumer_batch_max_records`` per poll). The records
  of each partition form a lane, processed in offset order; a poll's lanes are dealt to as many
  PostgreSQL transactions as lanes may run at once (``shared.messaging.lanes``), which run
  concurrently. Offsets are committed once for the batch, after every transaction has committed.
  A database or broker outage pauses consumption (``shared.messaging.outage``) and the same
  records are processed again when it is over.
- the retry topics. Messages wait for their not-before time, then are retried in place with
  backoff (which keeps their order) up to ``retry_max_attempts`` attempts in all, then
  dead-lettered. Finishing a message unparks its key in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import AckStatus
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from shared.aio import cancel_and_wait
from shared.db.uow import Database
from shared.messaging import metrics, parking
from shared.messaging.errors import DependencyOutage, is_contention, is_outage, is_permanent
from shared.messaging.failures import FailureRouter
from shared.messaging.fetch_focus import focus_fetches
from shared.messaging.incoming import (
    H_ATTEMPT,
    H_FIRST_FAILURE,
    H_NOT_BEFORE,
    H_ORIG_OFFSET,
    H_ORIG_PARTITION,
    H_ORIG_TIMESTAMP,
    RUNTIME_HEADERS,
    Incoming,
    Route,
    now_iso,
)
from shared.messaging.lanes import LaneProcessor, process_span
from shared.messaging.outage import OutageGate
from shared.messaging.relay import OutboxRelay
from shared.messaging.sampler import run_sampler
from shared.messaging.topics import retry_group, retry_topic
from shared.settings import Settings

log = logging.getLogger("som.runtime")

# After this many re-runs of a lane whose "outage" the probes did not confirm, the error is
# taken to be the message's own (a handler that times out on its own, say) and uses its retries.
UNCONFIRMED_OUTAGE_RERUNS = 3


@dataclass
class WorkerStatus:
    """What the readiness probe reports."""

    started: bool = False
    subscribers: list[Any] = field(default_factory=list)


def _faststream_logger(name: str) -> logging.Logger:
    """FastStream logs every message received and processed at INFO: hot-path noise that costs CPU."""
    logger = logging.getLogger(f"som.{name}.faststream")
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.WARNING)
    return logger


async def _parse_batch_lightly(
    records: tuple[ConsumerRecord, ...], parse_batch: Callable[[Any], Awaitable[Any]]
) -> Any:
    """FastStream's batch message, built from the first record only.

    Its own parser decodes every record's headers, and its decoder parses every value as JSON;
    the lanes read the raw records (``Incoming.from_record``) and never use either, which cost
    3-5 % of a worker's CPU.
    """
    message = await parse_batch(records[:1])
    message.raw_message = records
    return message


async def _poll_batch(
    subscriber: Any, consumer: AIOKafkaConsumer, *, quiet_after: float = 0.0, sweep_every: float = 0.1
) -> tuple[ConsumerRecord, ...]:
    """One poll of a batch subscriber: its records as soon as there are any, else ``()`` after its wait.

    In place of FastStream's own poll, which after an empty wait sleeps as long again before it
    polls anew: an idle worker woke 25 times a second (at a 20 ms wait), and a record that
    arrived during the sleep waited for it. Here the wait ends when records arrive, so it can be
    long without adding latency.
    """
    if quiet_after > 0:
        # Here, not at start: the consumer's fetcher exists once it started, and a consumer that
        # FastStream restarts gets a new one.
        focus_fetches(consumer, quiet_after=quiet_after, sweep_every=sweep_every)
    started = time.monotonic()
    batches = await consumer.getmany(
        timeout_ms=subscriber.batch_timeout_ms, max_records=subscriber.max_records
    )
    if not batches:
        if time.monotonic() - started < 0.005:  # answered at once (no assignment yet): do not spin
            await asyncio.sleep(0.02)
        return ()
    return tuple(chain.from_iterable(batches.values()))


async def _no_body(message: Any, decode: Callable[[Any], Awaitable[Any]]) -> None:
    """The batch handler takes the message itself (its raw records), never a decoded body."""
    return None


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
        # The service's own GET routes (shared.health.HttpRoutes), served beside the probes.
        self.http: Any = None
        self._background: list[asyncio.Task[None]] = []
        # Per consumer: offsets processed and committed to PostgreSQL but not yet to the broker.
        self._uncommitted: dict[int, dict[TopicPartition, int]] = {}
        assert settings.kafka_bootstrap, "kafka_bootstrap must be resolved before building a worker"
        self.broker = KafkaBroker(
            settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=False,  # the embedded broker has no InitProducerId; the outbox is the guarantee
            client_id=f"som-{name}",
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
            linger_ms=settings.relay_linger_ms,
            max_batch_size=settings.relay_max_batch_bytes,
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
        self.router = FailureRouter(
            self.producer,
            worker=name,
            group=self.group,
            namespace=self.namespace,
            backoff=settings.retry_backoff_seconds,
        )
        self.lanes = LaneProcessor(
            worker=name,
            service=f"{self.namespace}{name}",
            namespace=self.namespace,
            group=self.group,
            pool=db.pool,
            router=self.router,
            after_commit=db.after_commit,
        )
        self.gate = OutageGate(name, {"database": self._database_answers, "broker": self._broker_answers})
        self._lane_slots = asyncio.Semaphore(settings.lanes())
        self._tracer = trace.get_tracer(f"som.{name}")
        self._subscribe_all(routes)

    # -- wiring --------------------------------------------------------------------------

    def _subscribe_all(self, routes: list[Route]) -> None:
        """One batch consumer for every main topic and one consumer for every retry topic.

        One member per group (not one per topic): each extra member joining a group makes
        every member rebalance, which on start-up costs seconds per topic.
        """
        by_main = {f"{self.namespace}{r.topic}": r for r in routes}
        by_retry = {retry_topic(t, self.group): r for t, r in by_main.items()}
        s = self.settings
        common: dict[str, Any] = {
            "auto_offset_reset": "earliest",
            "ack_policy": AckPolicy.NACK_ON_ERROR,
            # A lane waiting out a database outage holds its batch; the member must stay in the group.
            "max_poll_interval_ms": s.consumer_max_poll_interval_ms,
            "session_timeout_ms": s.consumer_session_timeout_ms,
            "heartbeat_interval_ms": s.consumer_heartbeat_ms,
            "fetch_max_wait_ms": s.consumer_fetch_max_wait_ms,
        }

        for i in range(max(1, s.consumer_concurrency)):

            async def consume(_body: Any) -> None:
                # The message from FastStream's context, not as an injected ``KafkaMessage``
                # parameter: fast_depends resolves such a context field by a synchronous call that
                # it runs in a worker thread, once per batch: a thread hop per poll (at 100 orders/s
                # FastStream's share of intake's CPU was 10.8 % with it, 5.8 % without).
                msg = self.broker.context.get_local("message")
                records = cast(tuple[ConsumerRecord, ...], msg.raw_message)
                await self._on_batch(by_main, records, msg)

            consume.__name__ = f"{self.name}_main_{i}"
            sub = self.broker.subscriber(
                *by_main,
                group_id=self.group,
                batch=True,
                parser=_parse_batch_lightly,
                decoder=_no_body,
                max_records=s.consumer_batch_max_records,
                batch_timeout_ms=s.consumer_batch_timeout_ms,
                **common,
            )
            sub(consume)
            sub.get_msg = functools.partial(
                _poll_batch,
                sub,
                quiet_after=s.consumer_quiet_partition_ms / 1000,
                sweep_every=s.consumer_quiet_sweep_ms / 1000,
            )
            self.status.subscribers.append(sub)

        async def consume_retry(msg: KafkaMessage) -> None:
            rec = cast(ConsumerRecord, msg.raw_message)
            await self._on_retry(by_retry[rec.topic], rec)

        consume_retry.__name__ = f"{self.name}_retry"
        # Retries wait seconds anyway: a long fetch wait keeps an idle retry consumer from costing CPU.
        retry_common = dict(
            common, fetch_max_wait_ms=max(s.consumer_fetch_max_wait_ms, s.retry_fetch_max_wait_ms)
        )
        s2 = self.broker.subscriber(*by_retry, group_id=retry_group(self.group), **retry_common)
        s2(consume_retry)
        self.status.subscribers.append(s2)

    async def _on_startup(self) -> None:
        await self.producer.start()
        self.relay.start()

    async def _after_startup(self) -> None:
        self.status.started = True
        for factory in self.background_factories:
            self._background.append(asyncio.create_task(factory()))
        # Backlog gauges (outbox, due timers, readiness) for the dashboards and alerts.
        self._background.append(
            asyncio.create_task(
                run_sampler(self.db.pool, self.name, f"{self.namespace}{self.name}", self.readiness),
                name=f"metrics-sampler-{self.name}",
            )
        )

    async def _on_shutdown(self) -> None:
        self.status.started = False
        await cancel_and_wait(self._background, timeout=10, log=log, owner=f"stop of {self.name}")
        await self.relay.stop()
        await self.producer.stop()

    async def start(self) -> None:
        """Start in the current event loop (tests and ``som up`` in-process use)."""
        await self._on_startup()
        await self._start_broker()
        await self._after_startup()

    async def _start_broker(self) -> None:
        """What ``KafkaBroker.start`` does, with the subscribers started together.

        A group consumer's start waits for its group join (on Tansu about half the session
        timeout), and FastStream starts subscribers one after the other: the main and the retry
        group of a worker joined in turn, 6 s of a restarted worker's start at a 6 s session
        timeout. Together they join in the time of one.
        """
        await self.broker.connect()
        await asyncio.gather(*(sub.start() for sub in self.broker.subscribers))
        for pub in self.broker.publishers:
            await pub.start()
        self.broker.running = True

    async def stop(self) -> None:
        """Stop consuming (members leave their groups), drain the outbox, close clients."""
        await self.broker.stop()
        await self._on_shutdown()

    # -- dependencies --------------------------------------------------------------------

    async def _database_answers(self) -> bool:
        return bool(await self.db.pool.fetchval("SELECT 1") == 1)

    async def _broker_answers(self) -> bool:
        # A metadata request for no topics. FastStream's ping (describe_cluster) asks for every
        # topic's metadata and decodes it in Python: with one namespace's 75 topics (340
        # partitions) that was 2 % of each worker's CPU at one readiness sample per 5 s, and it
        # grows with the cluster.
        await self.broker.config.admin_client.describe_topics([])
        return True

    # -- main topics: batches by partition lane ------------------------------------------

    async def _on_batch(
        self,
        by_main: dict[str, Route],
        records: tuple[ConsumerRecord, ...],
        msg: Any,
    ) -> None:
        lanes: dict[tuple[str, int], list[ConsumerRecord]] = {}
        for rec in records:
            lanes.setdefault((rec.topic, rec.partition), []).append(rec)
        consumer = getattr(msg, "consumer", None)
        # The partitions are dealt to as many transactions as lanes may run at once (the largest
        # first, each to the emptiest): parallel where there are cores to spare, and a poll that
        # spreads a few records over many partitions still costs one transaction, not one each.
        slots: list[list[tuple[Route, list[Incoming]]]] = [[] for _ in range(self.settings.lanes())]
        sizes = [0] * len(slots)
        for (topic, _), recs in sorted(lanes.items(), key=lambda kv: -len(kv[1])):
            route = by_main[topic]
            incoming = [Incoming.from_record(route.topic, r) for r in recs]
            if route.skips is not None:
                wanted = [i for i in incoming if not route.skips(i)]
                if len(wanted) < len(incoming):
                    metrics.PROCESSED.labels(self.name, route.topic, "skipped").inc(
                        len(incoming) - len(wanted)
                    )
                incoming = wanted
            if incoming:
                emptiest = sizes.index(min(sizes))
                slots[emptiest].append((route, incoming))
                sizes[emptiest] += len(incoming)
        await asyncio.gather(*(self._transaction(group) for group in slots if group))
        if consumer is not None and hasattr(consumer, "assignment"):
            await self._commit_offsets(consumer, lanes)
            msg.committed = AckStatus.ACKED  # FastStream's ack would commit every partition again
        with contextlib.suppress(Exception):  # a metric read must never fail a batch
            for (topic, partition), recs in lanes.items():
                high = consumer.highwater(TopicPartition(topic, partition)) if consumer else None
                if high is not None:
                    metrics.CONSUMER_LAG.labels(self.name, by_main[topic].topic, str(partition)).set(
                        max(0, high - recs[-1].offset - 1)
                    )

    async def _commit_offsets(
        self, consumer: AIOKafkaConsumer, lanes: dict[tuple[str, int], list[ConsumerRecord]]
    ) -> None:
        """Commit the offsets of the batch's partitions (their transactions have committed).

        Only those: FastStream's ack commits every assigned partition (aiokafka's consumed
        offsets), 60 of them for intake's main consumer, which both the worker and the broker
        encode and process per batch, most of them unchanged. A commit that fails is tried
        again with the next batch (a redelivery meanwhile is dropped by the inbox); offsets of
        partitions no longer assigned are left to their new owner.
        """
        pending = self._uncommitted.setdefault(id(consumer), {})
        for (topic, partition), recs in lanes.items():
            pending[TopicPartition(topic, partition)] = recs[-1].offset + 1
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in pending.items() if tp in assigned}
        pending.clear()
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # as FastStream's ack would: log, consume on, commit next time
            pending.update(offsets)
            log.warning("%s: offset commit failed, retried with the next batch: %r", self.name, exc)

    async def _transaction(self, lanes: list[tuple[Route, list[Incoming]]]) -> None:
        """Run ``lanes`` in one transaction, waiting out outages until it commits."""
        unconfirmed = 0
        while True:
            try:
                async with self._lane_slots:
                    await self.lanes.run(lanes, blame_messages=unconfirmed >= UNCONFIRMED_OUTAGE_RERUNS)
                return
            except DependencyOutage as exc:
                confirmed = await self.gate.wait(exc.cause)
                unconfirmed = 0 if confirmed else unconfirmed + 1

    # -- retry topics: one message at a time, in place ------------------------------------

    async def _on_retry(self, route: Route, rec: ConsumerRecord) -> None:
        raw = Incoming.from_record(route.topic, rec)
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
        unconfirmed = 0
        while True:
            try:
                await self._process_retry(route, incoming)
                return
            except Exception as exc:
                if (is_outage(exc) or is_contention(exc)) and unconfirmed < UNCONFIRMED_OUTAGE_RERUNS:
                    confirmed = await self.gate.wait(exc)
                    unconfirmed = 0 if confirmed else unconfirmed + 1
                    continue
                unconfirmed = 0
                metrics.FAILURES.labels(self.name, route.topic, type(exc).__name__).inc()
                if is_permanent(exc) or incoming.attempt >= self.settings.retry_max_attempts:
                    await self._give_up(route, incoming, exc)
                    return
                metrics.RETRIES.labels(self.name, route.topic).inc()
                log.warning(
                    "attempt %d of %s failed (%s); retrying in place",
                    incoming.attempt,
                    route.topic,
                    type(exc).__name__,
                )
                await asyncio.sleep(self.router.backoff(incoming.attempt))
                incoming = replace(
                    incoming,
                    attempt=incoming.attempt + 1,
                    first_failure_at=incoming.first_failure_at or now_iso(),
                )

    async def _give_up(self, route: Route, incoming: Incoming, exc: Exception) -> None:
        """Dead-letter the message and unpark its key; outages on the way only pause."""
        await self._until_done(lambda: self.router.dead_letter(incoming, exc))
        await self._until_done(lambda: self._release(route, incoming))

    async def _until_done(self, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``step`` until it succeeds, pausing through outages (it is never the message's fault)."""
        while True:
            try:
                await step()
                return
            except Exception as exc:
                if not (is_outage(exc) or is_contention(exc)):
                    raise
                await self.gate.wait(exc)

    async def _release(self, route: Route, incoming: Incoming) -> None:
        if incoming.key is not None:
            async with self.db.pool.acquire() as conn:
                await parking.release(conn, self.group, route.topic, incoming.key)

    async def _process_retry(self, route: Route, incoming: Incoming) -> None:
        started = time.perf_counter()
        event_id = route.event_id(incoming)
        with process_span(self._tracer, f"{self.namespace}{route.topic}", incoming, self.group):
            async with self.db.unit_of_work(self.name) as uow:
                fresh = await uow.claim(self.group, event_id, route.topic)
                if fresh:
                    await route.handler(incoming, uow)
                if incoming.key is not None:  # unpark in the same transaction as the effect
                    await parking.release(uow.conn, self.group, route.topic, incoming.key)
        outcome = "ok" if fresh else "duplicate"
        metrics.PROCESSED.labels(self.name, route.topic, outcome).inc()
        metrics.HANDLER_SECONDS.labels(self.name, route.topic).observe(time.perf_counter() - started)

    # -- health ------------------------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        """Broker connected, database reachable, partitions assigned, not paused by an outage."""
        checks = {"started": self.status.started, "consuming": not self.gate.paused}
        checks.update(await self.gate.answering())
        assigned = False
        for sub in self.status.subscribers:
            consumer = getattr(sub, "consumer", None)
            if consumer is not None and consumer.assignment():
                assigned = True
        checks["partitions_assigned"] = assigned
        return checks


__all__ = ["DependencyOutage", "Incoming", "Route", "Worker"]
