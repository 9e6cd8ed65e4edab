"""Read-only queries on the ``lifecycle`` schema for operators' tools (``som subscriptions``, commands)."""

from __future__ import annotations

from datetime import datetime
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


async def page_subscriptions(
    pool: asyncpg.Pool,
    *,
    status: str | None = None,
    channel: str | None = None,
    customer: str | None = None,
    plan: str | None = None,
    search: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """One page of subscriptions, most recently changed first, after the keyset ``after``.

    ``search`` is a subscription id or a user's e-mail (exact, case-insensitive). The order
    ``(updated_at, subscription_id)`` is a unique key, so pages neither skip nor repeat rows, and
    each filter has an index on ``(column, updated_at, subscription_id)`` (migration 0002).
    """
    after_at, after_id = after if after is not None else (None, None)
    ids: list[str] | None = None
    if search is not None:
        # Resolved first, so the page query is primary-key lookups (an OR with a sub-select scans).
        owners = await pool.fetch(
            "SELECT subscription_id FROM lifecycle.subscription_users WHERE lower(email) = lower($1)", search
        )
        ids = [search, *(str(r["subscription_id"]) for r in owners)]
    rows = await pool.fetch(
        "SELECT s.subscription_id, s.status, s.channel, s.customer_id, s.plan_id, s.version, s.updated_at, "
        "s.created_at, s.state->'domain'->>'quantity' AS quantity, "
        "s.state->'domain'->>'current_period_end' AS next_renewal "
        "FROM lifecycle.subscriptions s WHERE ($1::text IS NULL OR s.status = $1) "
        "AND ($2::text IS NULL OR s.channel = $2) AND ($3::text IS NULL OR s.customer_id = $3) "
        "AND ($4::text IS NULL OR s.plan_id = $4) "
        "AND ($5::text[] IS NULL OR s.subscription_id = ANY($5::text[])) "
        "AND ($6::timestamptz IS NULL OR (s.updated_at, s.subscription_id) < ($6, $7::text)) "
        "ORDER BY s.updated_at DESC, s.subscription_id DESC LIMIT $8",
        status,
        channel,
        customer,
        plan,
        ids,
        after_at,
        after_id,
        limit,
    )
    return [dict(r) for r in rows]


async def pending_approvals(pool: asyncpg.Pool, *, limit: int = 200) -> list[dict[str, Any]]:
    """Subscriptions waiting in ``pending_approval``, oldest first."""
    rows = await pool.fetch(
        "SELECT subscription_id, channel, customer_id, plan_id, created_at, "
        "state->'domain'->>'quantity' AS quantity FROM lifecycle.subscriptions "
        "WHERE status = 'pending_approval' ORDER BY created_at, subscription_id LIMIT $1",
        limit,
    )
    return [dict(r) for r in rows]


async def status_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """How many subscriptions are in each status."""
    rows = await pool.fetch("SELECT status, count(*) AS n FROM lifecycle.subscriptions GROUP BY status")
    return {str(r["status"]): int(r["n"]) for r in rows}


async def command_outcome(pool: asyncpg.Pool, idempotency_key: str) -> str | None:
    """How the command with ``idempotency_key`` ended (``applied``, ``rejected``...), None while unseen."""
    value = await pool.fetchval(
        "SELECT outcome FROM lifecycle.command_keys WHERE idempotency_key = $1", idempotency_key
    )
    return str(value) if value is not None else None
