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
from shared.telemetry import spans_recorded

log = logging.getLogger("som.runtime")


@dataclass
class LaneResult:
    """What one lane transaction did."""

    processed: int = 0
    duplicates: int = 0
    failures: list[Failure] = field(default_factory=list)
    emitted: int = 0


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
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group,
            "messaging.destination.partition.id": str(incoming.partition),
            "messaging.kafka.offset": incoming.offset,
            "messaging.kafka.message.key": incoming.key or "",
            "messaging.message.id": incoming.headers.get("ce_id", ""),
            "messaging.som.attempt": incoming.attempt,
        },
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
        self, route: Route, records: Sequence[Incoming], *, blame_messages: bool = False
    ) -> LaneResult:
        """Process ``records`` (one partition, offset order) in one transaction.

        Handlers run without a savepoint each (two round trips a message saved). When one fails,
        the transaction rolls back and the lane runs again with that message set aside as failed,
        so it fails alone and the rest commits; a lane re-runs once per failing message, which is
        rare, and handlers only touch the database, so running them again changes nothing.

        ``blame_messages``: an error that looks like an outage while every dependency answers is
        treated as the message's own failure (after the caller re-ran the lane a few times).
        """
        known: dict[int, Exception] = {}
        while True:
            try:
                return await self._attempt(route, records, known, blame_messages)
            except _MessageFailed as failed:
                known[failed.index] = failed.exc

    async def _attempt(
        self, route: Route, records: Sequence[Incoming], known: dict[int, Exception], blame_messages: bool
    ) -> LaneResult:
        started = time.perf_counter()
        result = LaneResult()
        pending: list[OutboxMessage] = []
        try:
            self._fault_check()
            async with self.pool.acquire() as conn, conn.transaction():
                ids: list[str | None] = []
                for inc in records:
                    try:
                        ids.append(route.event_id(inc))
                    except Exception as exc:  # no id: the record cannot even be parsed
                        ids.append(None)
                        result.failures.append(
                            Failure(inc, exc if is_permanent(exc) else UnparseableMessage(str(exc)))
                        )
                keys = sorted({inc.key for inc in records if inc.key is not None})
                claimed, parked = await self._claim(conn, route, [i for i in ids if i is not None], keys)
                newly_parked: list[str] = []
                unclaim: list[str] = []
                for index, (inc, eid) in enumerate(zip(records, ids, strict=True)):
                    if eid is None:
                        continue
                    if inc.key is not None and inc.key in parked:
                        # An earlier message of this key waits in retry: queue behind it, keep order.
                        result.failures.append(Failure(inc, None))
                        newly_parked.append(inc.key)
                        if eid in claimed:
                            claimed.discard(eid)
                            unclaim.append(eid)
                        continue
                    if eid not in claimed:
                        result.duplicates += 1
                        continue
                    claimed.discard(eid)  # a second copy in this batch is a duplicate
                    failure = known.get(index)
                    if failure is None:
                        failure = await self._one(conn, route, inc, pending, blame_messages)
                        if failure is not None:  # roll back all, run again with this one set aside
                            raise _MessageFailed(index, failure)
                    if failure is None:
                        result.processed += 1
                        continue
                    metrics.FAILURES.labels(self.worker, route.topic, type(failure).__name__).inc()
                    unclaim.append(eid)
                    result.failures.append(Failure(inc, failure))
                    if not is_permanent(failure) and inc.key is not None:
                        parked.add(inc.key)
                        newly_parked.append(inc.key)
                if unclaim:
                    await conn.execute(
                        "DELETE FROM messaging.inbox WHERE consumer_group = $1 AND event_id = ANY($2::text[])",
                        self.group,
                        unclaim,
                    )
                await parking.park(conn, self.group, route.topic, newly_parked)
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
        metrics.BATCH_RECORDS.labels(self.worker).observe(len(records))
        if result.duplicates:
            metrics.PROCESSED.labels(self.worker, route.topic, "duplicate").inc(result.duplicates)
        if result.processed:
            per_message = (time.perf_counter() - started) / len(records)
            metrics.PROCESSED.labels(self.worker, route.topic, "ok").inc(result.processed)
            metrics.HANDLER_SECONDS.labels(self.worker, route.topic).observe(per_message)
        return result

    async def _claim(
        self, conn: asyncpg.Connection, route: Route, ids: list[str], keys: list[str]
    ) -> tuple[set[str], set[str]]:
        """Claim the batch's inbox rows and find its parked keys, in one round trip.

        Returns (claimed event ids, parked keys among ``keys``).
        """
        if not ids and not keys:
            return set(), set()
        rows = await conn.fetch(
            "WITH claim AS (INSERT INTO messaging.inbox (consumer_group, event_id, topic) "
            "SELECT $1, e, $3 FROM unnest($2::text[]) AS e ON CONFLICT DO NOTHING RETURNING event_id) "
            "SELECT true AS claimed, event_id AS value FROM claim UNION ALL "
            f"SELECT false, key FROM ({parking.PARKED_AMONG}) AS parked",
            self.group,
            ids,
            route.topic,
            keys,
        )
        claimed = {r["value"] for r in rows if r["claimed"]}
        return claimed, {r["value"] for r in rows if not r["claimed"]}

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
