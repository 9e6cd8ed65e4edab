"""Durable timers and business clocks.

A timer fires by emitting its stored command on ``subscriptions.commands`` (through the outbox,
in the transaction that marks it fired), so a fired timer is just another idempotent command:
exactly once even with several schedulers running (``FOR UPDATE SKIP LOCKED``), and it survives
restarts because it lives in Postgres.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import asyncpg

from shared.contracts import events as ev
from shared.contracts.envelope import derived_id, make_event
from shared.db.uow import Database, UnitOfWork
from shared.messaging import topics

log = logging.getLogger("som.scheduler")
SOURCE = "som/scheduler"
SYSTEM_CLOCK = "system"


async def schedule(
    uow: UnitOfWork, *, subscription_id: str, kind: str, due_at: datetime, clock: str, command: ev.SubscriptionCommand
) -> int:
    """Add a timer in the caller's transaction; returns its id."""
    return int(
        await uow.conn.fetchval(
            "INSERT INTO lifecycle.timers (subscription_id, kind, due_at, clock, command) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id",
            subscription_id, kind, due_at, clock, command.model_dump(mode="json"),
        )
    )


async def cancel_timers(uow: UnitOfWork, subscription_id: str, kinds: list[str] | None = None) -> int:
    """Cancel pending timers of a subscription (all, or of ``kinds``); returns how many."""
    status = await uow.conn.execute(
        "UPDATE lifecycle.timers SET cancelled_at = now() WHERE subscription_id = $1 AND fired_at IS NULL "
        "AND cancelled_at IS NULL AND ($2::text[] IS NULL OR kind = ANY($2::text[]))",
        subscription_id, kinds,
    )
    return int(status.split()[-1])


async def clock_now(conn: asyncpg.Connection | asyncpg.Pool, clock: str) -> datetime:
    """Business time on ``clock``."""
    value = await conn.fetchval("SELECT lifecycle.clock_now($1)", clock)
    if value is None:
        raise KeyError(f"no clock named {clock!r}")
    return value  # type: ignore[no-any-return]


async def create_clock(pool: asyncpg.Pool, name: str, at: datetime) -> None:
    """Create a test clock (or reset an existing one to ``at``)."""
    await pool.execute(
        "INSERT INTO lifecycle.clocks (name, now) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET now = $2",
        name, at,
    )


async def fire_due(db: Database, *, service: str = "lifecycle", batch: int = 100, clock: str | None = None) -> int:
    """Fire every due timer (oldest first) in one transaction; returns how many fired."""
    async with db.unit_of_work(service) as uow:
        rows = await uow.conn.fetch(
            "SELECT id, subscription_id, kind, due_at, clock, command FROM lifecycle.timers "
            "WHERE fired_at IS NULL AND cancelled_at IS NULL AND ($2::text IS NULL OR clock = $2) "
            "AND due_at <= lifecycle.clock_now(clock) ORDER BY due_at, id LIMIT $1 FOR UPDATE SKIP LOCKED",
            batch, clock,
        )
        for row in rows:
            cmd = ev.SubscriptionCommand.model_validate(row["command"])
            cmd = cmd.model_copy(update={"idempotency_key": f"timer:{row['id']}", "actor": "system:scheduler"})
            correlation = derived_id("timer", str(row["id"]))
            uow.emit(
                topics.SUBSCRIPTIONS_COMMANDS,
                make_event(
                    type=ev.SUBSCRIPTION_COMMAND,
                    source=SOURCE,
                    subject=row["subscription_id"],
                    data=cmd,
                    correlation_id=correlation,
                    causation_id=correlation,
                    time=row["due_at"],
                ),
            )
        if rows:
            await uow.conn.execute(
                "UPDATE lifecycle.timers SET fired_at = now() WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
    return len(rows)


async def run_scheduler(db: Database, *, poll_seconds: float = 1.0, service: str = "lifecycle") -> None:
    """Fire due timers forever (a background task of the lifecycle worker)."""
    while True:
        try:
            while await fire_due(db, service=service) > 0:
                pass
        except asyncio.CancelledError:
            raise
        except Exception:  # database down: the timers wait in Postgres, try again next poll
            log.exception("scheduler pass failed")
        await asyncio.sleep(poll_seconds)


async def pending_timers(pool: asyncpg.Pool, subscription_id: str | None = None) -> list[dict[str, Any]]:
    """Unfired timers (for `som subscriptions show` and the simulator)."""
    rows = await pool.fetch(
        "SELECT id, subscription_id, kind, due_at, clock FROM lifecycle.timers WHERE fired_at IS NULL "
        "AND cancelled_at IS NULL AND ($1::text IS NULL OR subscription_id = $1) ORDER BY due_at, id",
        subscription_id,
    )
    return [dict(r) for r in rows]


async def advance_clock(
    pool: asyncpg.Pool, clock: str, to: datetime, *, settle: float = 0.05, timeout: float = 120.0
) -> int:
    """Move a test clock to ``to``, stopping at every due timer in order until it is consumed.

    Each stop waits until the fired timer's command was processed by the lifecycle worker
    (its idempotency key appears in ``lifecycle.command_keys``) and no timer due on this clock
    is left, so timers created by the consequences (the next renewal) fire in turn, in order.
    Returns the number of timers fired.
    """
    count_fired = "SELECT count(*) FROM lifecycle.timers WHERE clock = $1 AND fired_at IS NOT NULL"
    fired_before = int(await pool.fetchval(count_fired, clock))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        nxt = await pool.fetchval(
            "SELECT min(due_at) FROM lifecycle.timers WHERE clock = $1 AND fired_at IS NULL "
            "AND cancelled_at IS NULL",
            clock,
        )
        step_to = nxt if nxt is not None and nxt <= to else to
        current = await clock_now(pool, clock)
        if step_to > current:
            await pool.execute("UPDATE lifecycle.clocks SET now = $2 WHERE name = $1", clock, step_to)
        if nxt is None or nxt > to:
            return int(await pool.fetchval(count_fired, clock)) - fired_before
        # Wait until the scheduler fired everything due and the lifecycle consumed those commands.
        while True:
            if loop.time() > deadline:
                raise TimeoutError(f"clock {clock}: timers due at {step_to} were not processed in time")
            row = await pool.fetchrow(
                "SELECT count(*) FILTER (WHERE t.fired_at IS NULL) AS unfired, "
                "count(*) FILTER (WHERE t.fired_at IS NOT NULL AND k.idempotency_key IS NULL) AS unprocessed "
                "FROM lifecycle.timers t LEFT JOIN lifecycle.command_keys k ON k.idempotency_key = 'timer:' || t.id "
                "WHERE t.clock = $1 AND t.cancelled_at IS NULL AND t.due_at <= $2 "
                "AND (t.fired_at IS NULL OR k.idempotency_key IS NULL)",
                clock, step_to,
            )
            if row["unfired"] == 0 and row["unprocessed"] == 0:
                break
            await asyncio.sleep(settle)
        await asyncio.sleep(settle)
