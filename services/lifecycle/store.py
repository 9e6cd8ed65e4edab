"""What the lifecycle worker keeps in PostgreSQL (schema ``lifecycle``) and its timers. Every call
runs on the handler's connection or unit of work, inside its transaction (inbox, state, audit,
timers and outbox commit together)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from shared import timekeeping
from shared.db.uow import UnitOfWork, write


class LifecycleStore(Protocol):
    """Subscriptions, their audit trail, users, instances, the command keys already seen, and the
    business clock and timers (:mod:`shared.timekeeping`) the handler reads and sets."""

    async def claim_command_and_load(
        self, conn: Any, idempotency_key: str, subscription_id: str
    ) -> tuple[bool, dict[str, Any] | None]:
        """Claim a command key and load the subscription's state, locked for the transaction.

        (True, state) the first time the key is seen, (False, ...) for a repeat, which has no second
        effect; state is None for a subscription not stored yet.
        """
        ...

    async def set_command_outcome(self, conn: Any, idempotency_key: str, outcome: str) -> None:
        """Record how a command ended (applied, rejected, ...)."""
        ...

    async def create(
        self,
        conn: Any,
        subscription_id: str,
        *,
        status: str,
        channel: str,
        customer_id: str,
        plan_id: str,
        state: dict[str, Any],
        owner: tuple[str, str | None] | None = None,
    ) -> None:
        """Insert a new subscription at version 1, with its buyer ``(user id, email)`` as owner."""
        ...

    async def update(
        self, conn: Any, subscription_id: str, *, status: str, plan_id: str, state: dict[str, Any]
    ) -> int:
        """Store the new state; returns the subscription's new version."""
        ...

    async def append_audit(
        self,
        conn: Any,
        subscription_id: str,
        *,
        from_status: str | None,
        to_status: str,
        command: str,
        actor: str | None,
        reason: str | None,
        channel: str,
        effective_at: datetime,
        correlation_id: str | None,
        trace_id: str | None,
    ) -> None:
        """One row of the append-only audit trail."""
        ...

    async def record_instance(
        self, conn: Any, subscription_id: str, instance_id: str, status: str, reported_at: datetime
    ) -> None:
        """An instance as provisioning reports it; an older report never overwrites a newer one."""
        ...

    async def clock_now(self, conn: Any, clock: str) -> datetime:
        """Business time on ``clock``; raises KeyError for an unknown test clock."""
        ...

    async def cancel_timers(self, uow: Any, subscription_id: str, kinds: list[str]) -> None:
        """Cancel the subscription's pending timers of ``kinds``."""
        ...

    async def schedule_timers(self, uow: Any, timers: Sequence[timekeeping.Timer]) -> None:
        """Add timers (none: nothing to do)."""
        ...


class PgLifecycleStore:
    """:class:`LifecycleStore` on PostgreSQL; the clock and timers are :mod:`shared.timekeeping`'s."""

    async def claim_command_and_load(
        self, conn: asyncpg.Connection, idempotency_key: str, subscription_id: str
    ) -> tuple[bool, dict[str, Any] | None]:
        """Claim a command key and load the subscription's state, locked, in one round trip.

        One statement instead of two: the claim's insert and the locking read share it (a repeat's
        read is wasted, but repeats are rare and every first delivery saves a round trip).
        """
        row = await conn.fetchrow(
            "WITH claim AS (INSERT INTO lifecycle.command_keys (idempotency_key, subscription_id, outcome) "
            "VALUES ($1, $2, 'pending') ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT EXISTS (SELECT FROM claim) AS first, s.state FROM (SELECT 1) AS one "
            "LEFT JOIN (SELECT state FROM lifecycle.subscriptions WHERE subscription_id = $2 FOR UPDATE) AS s "
            "ON true",
            idempotency_key,
            subscription_id,
        )
        assert row is not None
        return bool(row["first"]), (dict(row["state"]) if row["state"] is not None else None)

    async def set_command_outcome(self, conn: asyncpg.Connection, idempotency_key: str, outcome: str) -> None:
        """Record how a command ended (applied, rejected, ...): a queued write."""
        await write(
            conn,
            "UPDATE lifecycle.command_keys SET outcome = $2 WHERE idempotency_key = $1",
            idempotency_key,
            outcome,
        )

    async def create(
        self,
        conn: asyncpg.Connection,
        subscription_id: str,
        *,
        status: str,
        channel: str,
        customer_id: str,
        plan_id: str,
        state: dict[str, Any],
        owner: tuple[str, str | None] | None = None,
    ) -> None:
        """Insert a new subscription at version 1 and its buyer as owner (queued writes)."""
        await write(
            conn,
            "INSERT INTO lifecycle.subscriptions (subscription_id, status, version, channel, customer_id, plan_id, "
            "state) VALUES ($1, $2, 1, $3, $4, $5, $6)",
            subscription_id,
            status,
            channel,
            customer_id,
            plan_id,
            state,
        )
        if owner is not None:
            user_id, email = owner
            await write(
                conn,
                "INSERT INTO lifecycle.subscription_users (subscription_id, user_id, email, role) "
                "VALUES ($1, $2, $3, 'owner') ON CONFLICT DO NOTHING",
                subscription_id,
                user_id,
                email,
            )

    async def update(
        self,
        conn: asyncpg.Connection,
        subscription_id: str,
        *,
        status: str,
        plan_id: str,
        state: dict[str, Any],
    ) -> int:
        """Store the new state; returns the subscription's new version."""
        version = await conn.fetchval(
            "UPDATE lifecycle.subscriptions SET status = $2, plan_id = $3, state = $4, version = version + 1, "
            "updated_at = now() WHERE subscription_id = $1 RETURNING version",
            subscription_id,
            status,
            plan_id,
            state,
        )
        return int(version)

    async def append_audit(
        self,
        conn: asyncpg.Connection,
        subscription_id: str,
        *,
        from_status: str | None,
        to_status: str,
        command: str,
        actor: str | None,
        reason: str | None,
        channel: str,
        effective_at: datetime,
        correlation_id: str | None,
        trace_id: str | None,
    ) -> None:
        """One row of the append-only audit trail (a queued write)."""
        await write(
            conn,
            "INSERT INTO lifecycle.audit_trail (subscription_id, from_status, to_status, command, actor, reason, "
            "channel, effective_at, correlation_id, trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            subscription_id,
            from_status,
            to_status,
            command,
            actor,
            reason,
            channel,
            effective_at,
            correlation_id,
            trace_id,
        )

    async def record_instance(
        self,
        conn: asyncpg.Connection,
        subscription_id: str,
        instance_id: str,
        status: str,
        reported_at: datetime,
    ) -> None:
        """An instance as provisioning reports it; an older report never overwrites a newer one."""
        await conn.execute(
            "INSERT INTO lifecycle.instances (subscription_id, instance_id, status, reported_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (subscription_id, instance_id) DO UPDATE SET "
            "status = EXCLUDED.status, reported_at = EXCLUDED.reported_at "
            "WHERE lifecycle.instances.reported_at <= EXCLUDED.reported_at",
            subscription_id,
            instance_id,
            status,
            reported_at,
        )

    async def clock_now(self, conn: asyncpg.Connection, clock: str) -> datetime:
        """Business time on ``clock`` (no round trip for the system clock); KeyError when unknown."""
        return await timekeeping.clock_now(conn, clock)

    async def cancel_timers(self, uow: UnitOfWork, subscription_id: str, kinds: list[str]) -> None:
        """Cancel the subscription's pending timers of ``kinds`` (this service's only)."""
        await timekeeping.cancel_timers(uow, subscription_id, kinds)

    async def schedule_timers(self, uow: UnitOfWork, timers: Sequence[timekeeping.Timer]) -> None:
        """Add timers of this service in one statement (none: no round trip)."""
        await timekeeping.schedule_many(uow, timers)
