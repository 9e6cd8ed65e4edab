"""Unit of work: state change, inbox row and outbox rows commit in one Postgres transaction."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from opentelemetry import propagate

from shared.contracts.envelope import CloudEvent
from shared.db.pool import json_texts
from shared.messaging.faults import faults

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"


def event_headers(event: CloudEvent) -> dict[str, str]:
    """The Kafka headers of a CloudEvent record: structured-mode content type, its id and type."""
    return {"content-type": CLOUDEVENTS_CONTENT_TYPE, "ce_id": event.id, "ce_type": event.type}


@dataclass
class OutboxMessage:
    """An event waiting to be published after commit."""

    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


# Writes queued by the unit of work open on a connection (keyed by the connection object's id:
# pool proxies cannot be weakly referenced). See :func:`write`.
_queued: dict[int, list[tuple[str, tuple[Any, ...]]]] = {}
_PARAM = re.compile(r"\$(\d+)")


async def write(conn: asyncpg.Connection, sql: str, *args: Any) -> None:
    """Run a write, or queue it when a unit of work is open on ``conn``.

    Queued writes run together in ONE statement when the handler ends
    (:meth:`UnitOfWork.flush_writes`): a handler's inserts and updates cost one round trip
    instead of one each. ``sql`` is a single INSERT, UPDATE or DELETE without RETURNING and
    without a WITH clause of its own. Nothing the same handler does afterwards may read what a
    queued write writes, or write the same row again (statements in one WITH see one snapshot).
    """
    queue = _queued.get(id(conn))
    if queue is None:
        await conn.execute(sql, *args)
    else:
        queue.append((sql, args))


def combined(writes: list[tuple[str, tuple[Any, ...]]]) -> tuple[str, list[Any]]:
    """One statement doing ``writes`` (each a data-modifying CTE), with their parameters renumbered."""
    if len(writes) == 1:
        return writes[0][0], list(writes[0][1])
    args: list[Any] = []
    for _, params in writes:
        args.extend(params)
    return _combined_sql(tuple((sql, len(params)) for sql, params in writes)), args


@functools.lru_cache(maxsize=512)
def _combined_sql(shapes: tuple[tuple[str, int], ...]) -> str:
    # A handler queues the same few shapes again and again: renumbering them is done once per shape.
    parts: list[str] = []
    offset = 0

    def shifted(by: int) -> Callable[[re.Match[str]], str]:
        return lambda m: f"${int(m.group(1)) + by}"

    for i, (sql, count) in enumerate(shapes):
        parts.append(f"w{i} AS ({_PARAM.sub(shifted(offset), sql)} RETURNING 1)")
        offset += count
    return "WITH " + ", ".join(parts) + " SELECT 1"


class UnitOfWork:
    """One transaction: handlers read and write through ``conn`` and ``emit`` events.

    Writes made through :func:`write` are queued while the unit of work is open and run in one
    statement at :meth:`flush_writes`.
    """

    def __init__(self, conn: asyncpg.Connection, service: str, namespace: str) -> None:
        self.conn = conn
        self.service = service
        self.namespace = namespace
        self.pending: list[OutboxMessage] = []
        self.writes: list[tuple[str, tuple[Any, ...]]] = []
        _queued[id(conn)] = self.writes

    async def flush_writes(self) -> None:
        """Run the queued writes now (one statement); later ones queue again until :meth:`close`."""
        if self.writes:
            sql, args = combined(self.writes)
            self.writes.clear()
            await self.conn.execute(sql, *args)

    def close(self) -> None:
        """Stop queueing on the connection (writes still queued are dropped: call after a flush, or
        after a failure that rolls them back anyway)."""
        if _queued.get(id(self.conn)) is self.writes:
            del _queued[id(self.conn)]

    async def claim(self, consumer_group: str, event_id: str, topic: str) -> bool:
        """Record the event in the inbox; False if this group has already processed it."""
        status = await self.conn.execute(
            "INSERT INTO messaging.inbox (consumer_group, event_id, topic) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            consumer_group,
            event_id,
            topic,
        )
        return str(status).endswith(" 1")

    def emit(self, topic: str, event: CloudEvent, *, key: str | None = None) -> None:
        """Queue ``event`` for ``topic`` (logical name); it is written to the outbox at commit.

        The current trace context travels with the row so the relay's publish joins the trace.
        """
        headers = event_headers(event)
        propagate.inject(headers)
        self.pending.append(
            OutboxMessage(
                topic=f"{self.namespace}{topic}",
                key=key if key is not None else event.subject,
                value=event.model_dump_json(exclude_none=False).encode(),
                headers=headers,
            )
        )

    def emit_raw(self, topic: str, value: bytes, *, key: str | None, headers: dict[str, str]) -> None:
        """Queue a non-CloudEvent record (a channel payload forwarded as is)."""
        h = dict(headers)
        propagate.inject(h)
        self.pending.append(OutboxMessage(f"{self.namespace}{topic}", key, value, h))

    async def flush(self) -> None:
        """Run the queued writes, then write the queued events into the outbox (inside the transaction)."""
        await self.flush_writes()
        await write_outbox(self.conn, self.service, self.pending)


async def write_outbox(conn: asyncpg.Connection, service: str, messages: list[OutboxMessage]) -> None:
    """Insert ``messages`` into the outbox in one statement, in order (ids follow list order)."""
    if not messages:
        return
    await conn.execute(
        "INSERT INTO messaging.outbox (service, topic, key, value, headers) "
        "SELECT $1, t, k, v, h::jsonb FROM unnest($2::text[], $3::text[], $4::bytea[], $5::text[]) "
        "WITH ORDINALITY AS m(t, k, v, h, n) ORDER BY n",
        service,
        [m.topic for m in messages],
        [m.key for m in messages],
        [m.value for m in messages],
        json_texts(m.headers for m in messages),
    )


class Database:
    """The pool plus the unit-of-work factory; ``after_commit`` callbacks wake the outbox relay."""

    def __init__(self, pool: asyncpg.Pool, *, namespace: str = "") -> None:
        self.pool = pool
        self.namespace = namespace
        self.after_commit: list[Callable[[str], None]] = []

    @asynccontextmanager
    async def unit_of_work(self, service: str) -> AsyncIterator[UnitOfWork]:
        """Open a transaction; on clean exit flush the outbox, commit, then notify ``after_commit``."""
        if faults.fires(f"db_unavailable:{service}") or faults.fires("db_unavailable"):
            raise ConnectionRefusedError("database unavailable (injected fault)")
        async with self.pool.acquire() as conn:
            uow = UnitOfWork(conn, f"{self.namespace}{service}", self.namespace)
            try:
                async with conn.transaction():
                    yield uow
                    await uow.flush()
            finally:
                uow.close()
        if uow.pending and faults.fires("crash_after_commit"):
            # Simulates a worker killed between its commit and its publish: no cleanup, no offset commit.
            os._exit(137)
        if uow.pending:
            for callback in self.after_commit:
                callback(uow.service)


def decode_headers(raw: object) -> dict[str, str]:
    """Outbox ``headers`` column as a dict (jsonb may arrive as text from some drivers)."""
    if isinstance(raw, str):
        loaded = json.loads(raw)
        return {str(k): str(v) for k, v in loaded.items()}
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    return {}
