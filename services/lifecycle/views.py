"""Read-only queries on the ``lifecycle`` schema for operators' tools (``som subscriptions``, commands)."""

from __future__ import annotations

from typing import Any

import asyncpg


async def list_subscriptions(
    pool: asyncpg.Pool,
    *,
    status: str | None,
    channel: str | None,
    customer: str | None,
    plan: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Subscriptions matching every filter given (None = any), most recently changed first."""
    rows = await pool.fetch(
        "SELECT subscription_id, status, channel, customer_id, plan_id, version, updated_at, "
        "state->'domain'->>'quantity' AS quantity, state->'domain'->>'current_period_end' AS next_renewal "
        "FROM lifecycle.subscriptions WHERE ($1::text IS NULL OR status = $1) "
        "AND ($2::text IS NULL OR channel = $2) AND ($3::text IS NULL OR customer_id = $3) "
        "AND ($4::text IS NULL OR plan_id = $4) ORDER BY updated_at DESC LIMIT $5",
        status,
        channel,
        customer,
        plan,
        limit,
    )
    return [dict(r) for r in rows]


async def subscription(pool: asyncpg.Pool, subscription_id: str) -> dict[str, Any] | None:
    """The subscription's row (every column), or None."""
    row = await pool.fetchrow(
        "SELECT * FROM lifecycle.subscriptions WHERE subscription_id = $1", subscription_id
    )
    return dict(row) if row is not None else None


async def audit_trail(pool: asyncpg.Pool, subscription_id: str) -> list[dict[str, Any]]:
    """The subscription's audit rows, oldest first."""
    rows = await pool.fetch(
        "SELECT from_status, to_status, command, actor, reason, effective_at, recorded_at, trace_id "
        "FROM lifecycle.audit_trail WHERE subscription_id = $1 ORDER BY id",
        subscription_id,
    )
    return [dict(r) for r in rows]


async def users(pool: asyncpg.Pool, subscription_id: str) -> list[dict[str, Any]]:
    """Users and roles of the subscription."""
    rows = await pool.fetch(
        "SELECT user_id, email, role FROM lifecycle.subscription_users WHERE subscription_id = $1 ORDER BY user_id",
        subscription_id,
    )
    return [dict(r) for r in rows]


async def instances(pool: asyncpg.Pool, subscription_id: str) -> list[dict[str, Any]]:
    """Provisioned instances of the subscription as last reported."""
    rows = await pool.fetch(
        "SELECT instance_id, status, reported_at FROM lifecycle.instances "
        "WHERE subscription_id = $1 ORDER BY instance_id",
        subscription_id,
    )
    return [dict(r) for r in rows]


async def status(pool: asyncpg.Pool, subscription_id: str) -> str | None:
    """The subscription's status, or None when it does not exist (yet)."""
    value = await pool.fetchval(
        "SELECT status FROM lifecycle.subscriptions WHERE subscription_id = $1", subscription_id
    )
    return str(value) if value is not None else None


async def channel_and_state(pool: asyncpg.Pool, subscription_id: str) -> tuple[str, dict[str, Any]] | None:
    """The subscription's channel and stored state (for commands sent on its behalf), or None."""
    row = await pool.fetchrow(
        "SELECT channel, state FROM lifecycle.subscriptions WHERE subscription_id = $1", subscription_id
    )
    return (row["channel"], row["state"]) if row is not None else None


async def existing_subscriptions(pool: asyncpg.Pool, subscription_ids: list[str]) -> list[str]:
    """Which of ``subscription_ids`` exist (a row each: a duplicate would show twice)."""
    rows = await pool.fetch(
        "SELECT subscription_id FROM lifecycle.subscriptions WHERE subscription_id = ANY($1::text[])",
        sorted(subscription_ids),
    )
    return [str(r["subscription_id"]) for r in rows]
