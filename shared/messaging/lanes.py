"""Batched, effectively-once processing of one partition's records (a lane).

A lane's records are processed in offset order in ONE PostgreSQL transaction:
- the inbox claims of the whole batch in one statement (a claimed id is processed, a known one is
  a duplicate and changes nothing), which also reads the parked keys among the batch's keys (a
  parked key's messages follow the earlier one into the retry topic);
- each message's handler, in order. One that fails rolls back alone: the transaction is rolled
  back and the lane runs again with that message set aside (cheaper than a SAVEPOINT per message,
  two round trips each, since failures are rare); its claim is withdrawn, its key parks, and it
  goes to the retry topic (or the DLQ when it can never succeed) while the rest of the batch
  commits;
- the events all the messages caused, into the outbox in one statement;
- failed and parked messages are handed to the broker before the commit (a crash in between only
  duplicates a retry copy, which the inbox absorbs); offsets are committed by the caller after.
An outage (database or broker unreachable) aborts the lane with ``DependencyOutage``: nothing of
it committed, and the caller processes the same records again once the dependency answers.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import asyncpg
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared.db.uow import OutboxMessage, UnitOfWork, write_outbox
from shared.messaging import metrics, parking
from shared.messaging.errors import (
    DependencyOutage,
    UnparseableMessage,
    is_contention,
    is_outage,
    is_permanent,
)
from shared.messaging.failures import Failure, FailureRouter
from shared.messaging.faults import faults
from shared.messaging.incoming import Incoming, Route
from shared.telemetry import kafka_span_attributes, spans_recorded

log = logging.getLogger("som.runtime")


@dataclass
class LaneResult:
    """What one lane transaction did."""

    processed: int = 0
    duplicates: int = 0
    failures: list[Failure] = field(default_factory=list)
    emitted: int = 0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (topic, outcome) -> messages

    def count(self, topic: str, outcome: str) -> None:
        """One more message of ``topic`` with ``outcome`` (metrics after the commit)."""
        self.outcomes[topic, outcome] += 1


def process_span(
    tracer: trace.Tracer, topic: str, incoming: Incoming, group: str
) -> AbstractContextManager[trace.Span]:
    """The consumer span of one message, continuing the trace its headers carry.

    With no span recorded (tracing off or sampled out), only the incoming context is made
    current: the events the message causes still carry its trace id on.
    """
    if not spans_recorded():
        return _within(propagate.extract(incoming.headers))
    return tracer.start_as_current_span(
        f"{topic} process",
        context=propagate.extract(incoming.headers),
        kind=SpanKind.CONSUMER,
        attributes=kafka_span_attributes(
            "process",
            topic,
            incoming.key,
            incoming.headers.get("ce_id", ""),
            {
                "messaging.consumer.group.name": group,
                "messaging.destination.partition.id": str(incoming.partition),
                "messaging.kafka.offset": incoming.offset,
                "messaging.som.attempt": incoming.attempt,
            },
        ),
    )


@contextmanager
def _within(ctx: otel_context.Context) -> Iterator[trace.Span]:
    token = otel_context.attach(ctx)
    try:
        yield trace.get_current_span(ctx)
    finally:
        otel_context.detach(token)


class _MessageFailed(Exception):
    """The message at ``index`` failed on its own: the lane runs again without it."""

    def __init__(self, index: int, exc: Exception) -> None:
        super().__init__(f"message {index} failed: {exc!r}")
        self.index = index
        self.exc = exc


class LaneProcessor:
    """Runs lanes of one worker: the per-message handler inside the batch transaction."""

    def __init__(
        self,
        *,
        worker: str,
        service: str,
        namespace: str,
        group: str,
        pool: asyncpg.Pool,
        router: FailureRouter,
        after_commit: list[Callable[[str], None]],
    ) -> None:
        self.worker = worker
        self.service = service  # outbox service name (namespaced)
        self.namespace = namespace
        self.group = group
        self.pool = pool
        self.router = router
        self.after_commit = after_commit
        self._tracer = trace.get_tracer(f"som.{worker}")

    def _fault_check(self) -> None:
        if faults.fires(f"db_unavailable:{self.worker}") or faults.fires("db_unavailable"):
            raise ConnectionRefusedError("database unavailable (injected fault)")

    async def run(
        self,
        lanes: Sequence[tuple[Route, Sequence[Incoming]]],
        *,
        blame_messages: bool = False,
    ) -> LaneResult:
        """Process ``lanes`` (each one partition's records in offset order) in one transaction.

        Lanes of several partitions, and of several topics, share the transaction: a poll's records
        cost one claim, one outbox write and one commit however the partitions spread them (at a
        moderate rate a poll holds a record or two per partition). Per-key order holds because a
        key lives in one partition and each partition's records run in offset order.

        Handlers run without a savepoint each (two round trips a message saved). When one fails,
        the transaction rolls back and runs again with that message set aside as failed, so it
        fails alone and the rest commits; it re-runs once per failing message, which is rare, and
        handlers only touch the database, so running them again changes nothing.

        ``blame_messages``: an error that looks like an outage while every dependency answers is
        treated as the message's own failure (after the caller re-ran the lanes a few times).
        """
        items = [(route, inc) for route, records in lanes for inc in records]
        known: dict[int, Exception] = {}
        while True:
            try:
                return await self._attempt(items, known, blame_messages)
            except _MessageFailed as failed:
                known[failed.index] = failed.exc

    async def _attempt(
        self, items: Sequence[tuple[Route, Incoming]], known: dict[int, Exception], blame_messages: bool
    ) -> LaneResult:
        started = time.perf_counter()
        result = LaneResult()
        pending: list[OutboxMessage] = []
        try:
            self._fault_check()
            async with self.pool.acquire() as conn, conn.transaction():
                ids: list[str | None] = []
                for route, inc in items:
                    try:
                        ids.append(route.event_id(inc))
                    except Exception as exc:  # no id: the record cannot even be parsed
                        ids.append(None)
                        result.failures.append(
                            Failure(inc, exc if is_permanent(exc) else UnparseableMessage(str(exc)))
                        )
                claimed, parked = await self._claim(conn, items, ids)
                newly_parked: list[tuple[str, str]] = []
                unclaim: list[str] = []
                for index, ((route, inc), eid) in enumerate(zip(items, ids, strict=True)):
                    if eid is None:
                        continue
                    topic_key = (route.topic, inc.key) if inc.key is not None else None
                    if topic_key is not None and topic_key in parked:
                        # An earlier message of this key waits in retry: queue behind it, keep order.
                        result.failures.append(Failure(inc, None))
                        newly_parked.append(topic_key)
                        if eid in claimed:
                            claimed.discard(eid)
                            unclaim.append(eid)
                        continue
                    if eid not in claimed:
                        result.duplicates += 1
                        result.count(route.topic, "duplicate")
                        continue
                    claimed.discard(eid)  # a second copy in this batch is a duplicate
                    failure = known.get(index)
                    if failure is None:
                        failure = await self._one(conn, route, inc, pending, blame_messages)
                        if failure is not None:  # roll back all, run again with this one set aside
                            raise _MessageFailed(index, failure)
                    if failure is None:
                        result.processed += 1
                        result.count(route.topic, "ok")
                        continue
                    metrics.FAILURES.labels(self.worker, route.topic, type(failure).__name__).inc()
                    unclaim.append(eid)
                    result.failures.append(Failure(inc, failure))
                    if not is_permanent(failure) and topic_key is not None:
                        parked.add(topic_key)
                        newly_parked.append(topic_key)
                if unclaim:
                    await conn.execute(
                        "DELETE FROM messaging.inbox WHERE consumer_group = $1 AND event_id = ANY($2::text[])",
                        self.group,
                        unclaim,
                    )
                for topic in sorted({t for t, _ in newly_parked}):
                    await parking.park(conn, self.group, topic, [k for t, k in newly_parked if t == topic])
                await write_outbox(conn, self.service, pending)
                await self.router.send_all(result.failures)
        except (DependencyOutage, _MessageFailed):
            raise
        except Exception as exc:
            if is_outage(exc) or is_contention(exc):
                raise DependencyOutage(exc) from exc
            raise
        result.emitted = len(pending)
        if pending:
            if faults.fires("crash_after_commit"):
                # A worker killed between its commit and its publish: no cleanup, no offset commit.
                os._exit(137)
            for callback in self.after_commit:
                callback(self.service)
        metrics.BATCH_RECORDS.labels(self.worker).observe(len(items))
        per_message = (time.perf_counter() - started) / max(1, len(items))
        for (topic, outcome), n in result.outcomes.items():
            metrics.PROCESSED.labels(self.worker, topic, outcome).inc(n)
            if outcome == "ok":
                metrics.HANDLER_SECONDS.labels(self.worker, topic).observe(per_message)
        return result

    async def _claim(
        self, conn: asyncpg.Connection, items: Sequence[tuple[Route, Incoming]], ids: list[str | None]
    ) -> tuple[set[str], set[tuple[str, str]]]:
        """Claim the inbox rows and find the parked keys of the batch, in one round trip.

        Returns (claimed event ids, parked (topic, key) pairs among the batch's).
        """
        claims = [(eid, route.topic) for (route, _), eid in zip(items, ids, strict=True) if eid is not None]
        keyed = sorted({(route.topic, inc.key) for route, inc in items if inc.key is not None})
        if not claims and not keyed:
            return set(), set()
        rows = await conn.fetch(
            "WITH claim AS (INSERT INTO messaging.inbox (consumer_group, event_id, topic) "
            "SELECT $1, e, t FROM unnest($2::text[], $3::text[]) AS c(e, t) ON CONFLICT DO NOTHING "
            "RETURNING event_id) "
            "SELECT NULL::text AS topic, event_id AS value FROM claim UNION ALL "
            f"SELECT topic, key FROM ({parking.PARKED_AMONG}) AS parked",
            self.group,
            [e for e, _ in claims],
            [t for _, t in claims],
            [t for t, _ in keyed],
            [k for _, k in keyed],
        )
        claimed = {r["value"] for r in rows if r["topic"] is None}
        return claimed, {(r["topic"], r["value"]) for r in rows if r["topic"] is not None}

    async def _one(
        self,
        conn: asyncpg.Connection,
        route: Route,
        inc: Incoming,
        pending: list[OutboxMessage],
        blame_messages: bool,
    ) -> Exception | None:
        """Run the handler; the message's own failure is returned, an outage raised."""
        uow = UnitOfWork(conn, self.service, self.namespace)
        with process_span(self._tracer, f"{self.namespace}{route.topic}", inc, self.group) as span:
            try:
                if faults.fires(f"handler_error:{self.worker}"):
                    raise RuntimeError("handler failed (injected fault)")
                await route.handler(inc, uow)
                await uow.flush_writes()  # the handler's queued writes: its failure if they fail
            except Exception as exc:
                if conn.is_closed() or ((is_outage(exc) or is_contention(exc)) and not blame_messages):
                    raise DependencyOutage(exc) from exc
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                return exc
            finally:
                uow.close()
        pending.extend(uow.pending)
        return None
