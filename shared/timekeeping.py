"""Business time and durable timers, shared by every worker.

A timer fires by publishing its stored event through the outbox, in the transaction that marks
it fired: exactly once even with several schedulers (``FOR UPDATE SKIP LOCKED``), and it
survives restarts because it lives in Postgres. Test clocks move only when told to;
:func:`advance_clock` stops at every due timer, in order, and waits until the whole system is
quiet before going on, so consequences (the next renewal) fire in turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel

from shared.contracts.envelope import CloudEvent, caused_by, derived_id, make_event
from shared.db.pool import json_of
from shared.db.uow import Database, UnitOfWork, write
from shared.messaging.errors import is_outage
from shared.messaging.offsets import end_offsets, partitions_of
from shared.messaging.topics import CONSUMERS, consumer_group, retry_group, retry_topic

log = logging.getLogger("som.timekeeping")
SYSTEM_CLOCK = "system"


async def clock_now(conn: asyncpg.Connection | asyncpg.Pool, clock: str) -> datetime:
    """Business time on ``clock``; raises KeyError for an unknown test clock."""
    if clock == SYSTEM_CLOCK:
        return datetime.now(UTC)  # no round trip for the wall clock
    value = await conn.fetchval("SELECT timekeeping.clock_now($1)", clock)
    if value is None:
        raise KeyError(f"no clock named {clock!r}")
    return value  # type: ignore[no-any-return]


async def create_clock(pool: asyncpg.Pool | asyncpg.Connection, name: str, at: datetime) -> None:
    """Create a test clock (or reset an existing one to ``at``)."""
    await pool.execute(
        "INSERT INTO timekeeping.clocks (name, now) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET now = $2",
        name,
        at,
    )


async def schedule(
    uow: UnitOfWork,
    *,
    subscription_id: str,
    kind: str,
    due_at: datetime,
    clock: str,
    topic: str,
    event_type: str,
    payload: BaseModel,
) -> int:
    """Add a timer of the unit of work's service, in its transaction; returns the timer id."""
    return int(
        await uow.conn.fetchval(
            "INSERT INTO timekeeping.timers (service, subscription_id, kind, due_at, clock, topic, event_type, "
            "payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            uow.service,
            subscription_id,
            kind,
            due_at,
            clock,
            topic,
            event_type,
            json_of(payload),
        )
    )


@dataclass(frozen=True)
class Timer:
    """A timer to add: when (on which clock), for which subscription, and the event it publishes."""

    subscription_id: str
    kind: str
    due_at: datetime
    clock: str
    topic: str
    event_type: str
    payload: BaseModel


async def schedule_many(uow: UnitOfWork, timers: Sequence[Timer], *, fired: Sequence[bool] = ()) -> None:
    """Add several timers of the unit of work's service in one statement (same transaction; queued
    with the handler's other writes, :func:`shared.db.uow.write`).

    ``fired[i]`` stores timer ``i`` as already fired (its event was published by the caller):
    the row stays the record of what was posted (the journal export reads them).
    """
    if not timers:
        return
    flags = list(fired) or [False] * len(timers)
    await write(
        uow.conn,
        "INSERT INTO timekeeping.timers (service, subscription_id, kind, due_at, clock, topic, event_type, payload, "
        "fired_at) SELECT $1, s, k, d, c, t, e, p::jsonb, CASE WHEN f THEN now() END FROM unnest($2::text[], $3::text[], "
        "$4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[]) AS x(s, k, d, c, t, e, p, f)",
        uow.service,
        [t.subscription_id for t in timers],
        [t.kind for t in timers],
        [t.due_at for t in timers],
        [t.clock for t in timers],
        [t.topic for t in timers],
        [t.event_type for t in timers],
        [json_of(t.payload) for t in timers],
        flags,
    )


async def schedule_or_publish(
    uow: UnitOfWork, timers: Sequence[Timer], *, cause: CloudEvent, source: str
) -> int:
    """Schedule ``timers``; those already due on their clock are published now and stored as fired.

    A timer due at once (an invoice's issue-date journal entries, its first payment request)
    would otherwise be claimed and stamped by the scheduler moments later, in a transaction of
    its own, for the same event. Published here it commits with its cause, exactly once all
    the same, and carries the cause's correlation (one trace per order); its row is stored as
    fired, so the timers stay the record of what was posted. Returns how many were published.
    """
    now_of: dict[str, datetime | None] = {}
    fired: list[bool] = []
    for index, timer in enumerate(timers):
        if timer.clock not in now_of:
            try:
                now_of[timer.clock] = await clock_now(uow.conn, timer.clock)
            except KeyError:  # an unknown test clock: the scheduler decides once it exists
                now_of[timer.clock] = None
        now = now_of[timer.clock]
        due = now is not None and timer.due_at <= now
        fired.append(due)
        if due:
            uow.emit(
                timer.topic,
                caused_by(
                    cause,
                    type=timer.event_type,
                    source=source,
                    subject=timer.subscription_id,
                    data=timer.payload,
                    discriminator=f"{timer.kind}#{index}",
                    time=timer.due_at,
                ),
            )
    await schedule_many(uow, timers, fired=fired)
    return sum(fired)


async def cancel_timers(uow: UnitOfWork, subscription_id: str, kinds: list[str] | None = None) -> int:
    """Cancel pending timers of this service for a subscription (all, or of ``kinds``).

    Queued writes run first: a timer scheduled earlier in the same handler is cancelled too.
    """
    await uow.flush_writes()
    # Two statements, not one with "$3 IS NULL OR ...": a prepared statement's generic plan cannot
    # use the (subscription_id, kind) index through that OR and scans every pending timer instead.
    pending = "fired_at IS NULL AND cancelled_at IS NULL AND service = $1 AND subscription_id = $2"
    if kinds is None:
        status = await uow.conn.execute(
            f"UPDATE timekeeping.timers SET cancelled_at = now() WHERE {pending}",
            uow.service,
            subscription_id,
        )
    else:
        status = await uow.conn.execute(
            f"UPDATE timekeeping.timers SET cancelled_at = now() WHERE {pending} AND kind = ANY($3::text[])",
            uow.service,
            subscription_id,
            kinds,
        )
    return int(status.split()[-1])


# Due timers of a service, oldest first: the wall clock's and each test clock's, each by index.
_DUE_IDS = (
    "SELECT id FROM ("
    " (SELECT t.id, t.due_at FROM timekeeping.timers t WHERE t.service = $1 AND t.clock = 'system'"
    "  AND t.due_at <= now() AND t.fired_at IS NULL AND t.cancelled_at IS NULL ORDER BY t.due_at, t.id LIMIT $2)"
    " UNION ALL"
    " (SELECT t.id, t.due_at FROM timekeeping.clocks c JOIN LATERAL (SELECT t.id, t.due_at FROM timekeeping.timers t"
    "  WHERE t.service = $1 AND t.clock = c.name AND t.due_at <= c.now AND t.fired_at IS NULL"
    "  AND t.cancelled_at IS NULL ORDER BY t.due_at, t.id LIMIT $2) t ON true)"
    ") due ORDER BY due_at, id LIMIT $2"
)


async def fire_due(db: Database, service: str, *, batch: int = 500) -> int:
    """Fire up to ``batch`` due timers of ``service`` (oldest first) in one transaction; returns how many.

    One query claims them (``FOR UPDATE SKIP LOCKED``: another scheduler of the service takes
    others), their events go to the outbox in one statement, one update stamps them fired.
    """
    service_name = f"{db.namespace}{service}"
    # A cheap look first: an idle scheduler polls often and should not open empty transactions.
    if not await db.pool.fetchval(f"SELECT EXISTS ({_DUE_IDS})", service_name, 1):
        return 0
    async with db.unit_of_work(service) as uow:
        rows = await uow.conn.fetch(
            "SELECT id, subscription_id, kind, due_at, topic, event_type, payload FROM timekeeping.timers "
            f"WHERE id IN ({_DUE_IDS}) AND fired_at IS NULL AND cancelled_at IS NULL "
            "ORDER BY due_at, id FOR UPDATE SKIP LOCKED",
            uow.service,
            batch,
        )
        for row in rows:
            correlation = derived_id("timer", str(row["id"]))
            uow.emit(
                row["topic"],
                make_event(
                    type=row["event_type"],
                    source=f"som/{service}/timers",
                    subject=row["subscription_id"],
                    data=_Payload.model_validate(row["payload"]),
                    correlation_id=correlation,
                    causation_id=correlation,
                    time=row["due_at"],
                ),
            )
        if rows:
            await uow.conn.execute(
                "UPDATE timekeeping.timers SET fired_at = now() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
    return len(rows)


class _Payload(BaseModel):
    """A stored event payload, re-emitted as it was."""

    model_config = {"extra": "allow"}


async def run_scheduler(db: Database, service: str, *, poll_seconds: float = 1.0) -> None:
    """Fire due timers of ``service`` forever (a background task of its worker).

    While the database is unreachable the timers wait in it: the scheduler says so once and polls
    with backoff (up to 5 s) instead of logging a traceback every poll.
    """
    delay = poll_seconds
    down = False
    while True:
        try:
            while await fire_due(db, service) > 0:
                pass
            if down:
                log.warning("scheduler of %s: database answers again", service)
            down, delay = False, poll_seconds
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_outage(exc):
                log.exception("scheduler pass of %s failed", service)
            elif not down:
                log.warning(
                    "scheduler of %s: database unreachable (%s); timers wait", service, type(exc).__name__
                )
            down = down or is_outage(exc)
            delay = min(5.0, max(delay * 2, poll_seconds)) if down else poll_seconds
        await asyncio.sleep(delay)


async def pending_timers(pool: asyncpg.Pool, subscription_id: str | None = None) -> list[dict[str, Any]]:
    """Unfired timers, soonest first."""
    rows = await pool.fetch(
        "SELECT id, service, subscription_id, kind, due_at, clock FROM timekeeping.timers WHERE fired_at IS NULL "
        "AND cancelled_at IS NULL AND ($1::text IS NULL OR subscription_id = $1) ORDER BY due_at, id",
        subscription_id,
    )
    return [dict(r) for r in rows]


class LagProbe:
    """How far the consumer groups of ``services`` (default all) in ``namespace`` are behind.

    A quiet check runs many times while a test clock advances, so the probe keeps two clients
    open for its whole use: a group-less reader for the true partition ends (a "latest offset"
    answer alone is short on Tansu) and an admin client that fetches each group's committed
    offsets in one request (before: a consumer started per group and check).
    """

    def __init__(self, bootstrap: str, namespace: str, services: Iterable[str] | None = None) -> None:
        if not CONSUMERS:  # else every check would find nothing behind and pass
            raise RuntimeError("no consumers declared: import services.registry first")
        wanted = set(services) if services is not None else set(CONSUMERS)
        self.bootstrap = bootstrap
        self.groups: dict[str, list[str]] = {}
        for service, logical_topics in CONSUMERS.items():
            if service not in wanted:
                continue
            group = consumer_group(namespace, service)
            self.groups[group] = [f"{namespace}{t}" for t in logical_topics]
            self.groups[retry_group(group)] = [retry_topic(f"{namespace}{t}", group) for t in logical_topics]
        self._reader: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def __aenter__(self) -> LagProbe:
        self._reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
        )
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            await self._reader.start()
            await self._admin.start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def reopen(self) -> None:
        """Close both clients and open them again (a check that did not answer in time)."""
        await self.__aexit__()
        await self.__aenter__()

    async def __aexit__(self, *_: object) -> None:
        if self._reader is not None:
            await self._reader.stop()
        if self._admin is not None:
            await self._admin.close()
        self._reader = self._admin = None

    async def lag(self) -> int:
        """Records written but not yet committed by the groups."""
        assert self._reader is not None and self._admin is not None, "use the probe with async with"
        names = sorted({t for topic_names in self.groups.values() for t in topic_names})
        of_topic: dict[str, list[TopicPartition]] = {t: [] for t in names}
        for tp in await partitions_of(self._reader, names):  # topics made since the probe started
            of_topic[tp.topic].append(tp)
        by_group = {
            grp: [tp for t in topic_names for tp in of_topic[t]] for grp, topic_names in self.groups.items()
        }
        every = sorted({tp for tps in by_group.values() for tp in tps})
        try:
            ends = await end_offsets(self._reader, every)  # the true end, also on Tansu
        finally:
            # Assigned partitions are fetched in the background without end (every 5 ms here):
            # between checks they are paused (the next check assigns them afresh).
            self._reader.pause(*every)
        total = 0
        for grp, tps in by_group.items():
            behind = [tp for tp in tps if ends.get(tp, 0) > 0]
            if not behind:
                continue  # nothing was ever written: nothing to be behind on
            committed = await self._admin.list_consumer_group_offsets(grp, partitions=behind)
            for tp in behind:
                found = committed.get(tp)
                total += max(0, ends[tp] - max(found.offset if found is not None else 0, 0))
        return total


async def consumer_lag(bootstrap: str, namespace: str, services: Iterable[str] | None = None) -> int:
    """Records not yet committed by the consumer groups of ``services`` (default all) in ``namespace``."""
    async with LagProbe(bootstrap, namespace, services) as probe:
        return await probe.lag()


async def quiet(
    pool: asyncpg.Pool,
    bootstrap: str,
    namespace: str,
    clock: str,
    services: Iterable[str] | None = None,
    *,
    probe: LagProbe | None = None,
) -> bool:
    """Nothing due and unfired on ``clock``, nothing in the outbox, no consumer behind."""
    unfired = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM timekeeping.timers WHERE clock = $1 AND fired_at IS NULL "
        "AND cancelled_at IS NULL AND due_at <= timekeeping.clock_now($1))",
        clock,
    )
    if unfired:
        return False
    if await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM messaging.outbox WHERE starts_with(service, $1))", namespace
    ):
        return False
    if probe is not None:
        return await probe.lag() == 0
    return await consumer_lag(bootstrap, namespace, services) == 0


_CHECK_SECONDS = 20.0  # longest one quiet check may take before its probe is opened afresh


async def wait_quiet(
    pool: asyncpg.Pool,
    bootstrap: str,
    namespace: str,
    clock: str,
    *,
    timeout: float = 120.0,
    poll: float = 0.1,
    services: Iterable[str] | None = None,
    probe: LagProbe | None = None,
) -> None:
    """Wait until :func:`quiet` holds twice in a row (a handler may be mid-transaction once).

    ``probe``: an open :class:`LagProbe` of the same groups, else one is opened for the wait.
    """
    if probe is None:
        async with LagProbe(bootstrap, namespace, services) as opened:
            return await wait_quiet(
                pool, bootstrap, namespace, clock, timeout=timeout, poll=poll, services=services, probe=opened
            )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    streak = 0
    pause = poll
    while True:
        if loop.time() > deadline:
            raise TimeoutError(f"clock {clock}: the system did not settle within {timeout}s")
        try:
            # One check never waits past the deadline: a client that stopped answering is opened
            # again, so a wedged connection costs one check, not the whole wait.
            async with asyncio.timeout(max(0.1, min(_CHECK_SECONDS, deadline - loop.time()))):
                calm = await quiet(pool, bootstrap, namespace, clock, services, probe=probe)
        except TimeoutError:
            log.warning("quiet check of clock %s did not answer in time; reopening the lag probe", clock)
            calm = False
            await probe.reopen()
        if calm:
            streak, pause = streak + 1, poll
            if streak == 2:
                return  # no pause after the second calm check: it decides nothing more
        else:
            # Busy for a while (a renewal run): check less often, each check reads every group's
            # offsets and would take a share of the broker and the database from the work itself.
            streak, pause = 0, min(pause * 1.5, max(poll, 1.0))
        await asyncio.sleep(pause)


async def advance_clock(
    pool: asyncpg.Pool,
    bootstrap: str,
    namespace: str,
    clock: str,
    to: datetime,
    *,
    timeout: float = 300.0,
    services: Iterable[str] | None = None,
    probe: LagProbe | None = None,
) -> int:
    """Move a test clock to ``to``, stopping at each due timer in order; returns timers fired.

    ``services`` names the workers that are running (default: all), whose consumers must catch up.
    ``probe``: an open :class:`LagProbe` of those groups (a caller that advances many times keeps
    one), else one is opened for this advance.
    """
    if probe is None:
        async with LagProbe(bootstrap, namespace, services) as opened:  # one for every stop of the clock
            return await advance_clock(
                pool, bootstrap, namespace, clock, to, timeout=timeout, services=services, probe=opened
            )
    count_fired = "SELECT count(*) FROM timekeeping.timers WHERE clock = $1 AND fired_at IS NOT NULL"
    before = int(await pool.fetchval(count_fired, clock))
    await wait_quiet(pool, bootstrap, namespace, clock, timeout=timeout, services=services, probe=probe)
    while True:
        nxt = await pool.fetchval(
            "SELECT min(due_at) FROM timekeeping.timers WHERE clock = $1 AND fired_at IS NULL "
            "AND cancelled_at IS NULL",
            clock,
        )
        step = nxt if nxt is not None and nxt <= to else to
        if step > await clock_now(pool, clock):
            await pool.execute("UPDATE timekeeping.clocks SET now = $2 WHERE name = $1", clock, step)
        await wait_quiet(pool, bootstrap, namespace, clock, timeout=timeout, services=services, probe=probe)
        if nxt is None or nxt > to:
            return int(await pool.fetchval(count_fired, clock)) - before
