"""Read-only queries on the ``entitlements`` schema for operators' tools (``som entitlements``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from services.entitlements.domain.entitlements import Override, SubscriptionInputs
from services.entitlements.store import override_of


async def customer_set(pool: asyncpg.Pool, customer_id: str) -> dict[str, Any] | None:
    """The customer's current merged set with its version, or None."""
    row = await pool.fetchrow(
        "SELECT version, body, updated_at FROM entitlements.customer_sets WHERE customer_id = $1 AND version > 0",
        customer_id,
    )
    return dict(row) if row is not None else None


async def subscription_sets(pool: asyncpg.Pool, customer_id: str) -> list[dict[str, Any]]:
    """The current set of each of the customer's subscriptions."""
    rows = await pool.fetch(
        "SELECT subscription_id, version, lifecycle_version, applied_version, body, inputs, updated_at "
        "FROM entitlements.entitlement_sets WHERE customer_id = $1 ORDER BY subscription_id",
        customer_id,
    )
    return [dict(r) for r in rows]


async def set_at(
    pool: asyncpg.Pool, customer_id: str, at: datetime, subscription_id: str | None = None
) -> dict[str, Any] | None:
    """From the history: the set in force at ``at`` (the customer's, or one subscription's) and its cause."""
    row = await pool.fetchrow(
        "SELECT version, previous_version, body, effective_at, cause_event_id, cause_command, cause_actor, "
        "recorded_at FROM entitlements.history WHERE customer_id = $1 "
        "AND scope = CASE WHEN $2::text IS NULL THEN 'customer' ELSE 'subscription' END "
        "AND subscription_id IS NOT DISTINCT FROM $2 AND effective_at <= $3 "
        "ORDER BY effective_at DESC, version DESC LIMIT 1",
        customer_id,
        subscription_id,
        at,
    )
    return dict(row) if row is not None else None


async def history(pool: asyncpg.Pool, customer_id: str) -> list[dict[str, Any]]:
    """Every published set of the customer and its subscriptions, oldest first."""
    rows = await pool.fetch(
        "SELECT scope, subscription_id, version, previous_version, body, effective_at, cause_event_id, "
        "cause_command, cause_actor, recorded_at FROM entitlements.history WHERE customer_id = $1 ORDER BY id",
        customer_id,
    )
    return [dict(r) for r in rows]


async def subscription_history(
    pool: asyncpg.Pool, subscription_id: str, limit: int = 50
) -> list[dict[str, Any]]:
    """The subscription's published sets, newest first, with what caused each."""
    rows = await pool.fetch(
        "SELECT version, previous_version, body, effective_at, cause_command, cause_actor, recorded_at "
        "FROM entitlements.history WHERE subscription_id = $1 AND scope = 'subscription' "
        "ORDER BY id DESC LIMIT $2",
        subscription_id,
        limit,
    )
    return [dict(r) for r in rows]


async def overrides(pool: asyncpg.Pool, customer_id: str) -> list[Override]:
    """Every override granted to the customer or its subscriptions."""
    rows = await pool.fetch(
        "SELECT override_id, customer_id, subscription_id, feature, value, starts_at, until, reason, actor "
        "FROM entitlements.overrides WHERE customer_id = $1 ORDER BY override_id",
        customer_id,
    )
    return [override_of(r) for r in rows]


async def customers(pool: asyncpg.Pool) -> list[str]:
    """Every customer that has a set."""
    rows = await pool.fetch("SELECT customer_id FROM entitlements.customer_sets ORDER BY customer_id")
    return [r["customer_id"] for r in rows]


async def inputs_of(pool: asyncpg.Pool, customer_id: str) -> list[SubscriptionInputs]:
    """The lifecycle snapshots the customer's sets were computed from."""
    rows = await pool.fetch(
        "SELECT inputs FROM entitlements.entitlement_sets WHERE customer_id = $1 AND inputs IS NOT NULL "
        "ORDER BY subscription_id",
        customer_id,
    )
    return [SubscriptionInputs.from_json(r["inputs"]) for r in rows]


async def customer_of(pool: asyncpg.Pool, subscription_id: str) -> str | None:
    """The customer of a subscription, as entitlements knows it."""
    value = await pool.fetchval(
        "SELECT customer_id FROM entitlements.entitlement_sets WHERE subscription_id = $1", subscription_id
    )
    return str(value) if value is not None else None


async def users(pool: asyncpg.Pool, subscription_id: str) -> list[dict[str, Any]]:
    """Current users and roles of a subscription."""
    rows = await pool.fetch(
        "SELECT email, role, updated_at FROM entitlements.subscription_users WHERE subscription_id = $1 "
        "AND NOT removed ORDER BY email",
        subscription_id,
    )
    return [dict(r) for r in rows]


async def user_audit(pool: asyncpg.Pool, subscription_id: str) -> list[dict[str, Any]]:
    """Every change of the subscription's users, oldest first."""
    rows = await pool.fetch(
        "SELECT email, action, role, actor, reason, recorded_at FROM entitlements.user_audit "
        "WHERE subscription_id = $1 ORDER BY id",
        subscription_id,
    )
    return [dict(r) for r in rows]


async def entitlement_set(pool: asyncpg.Pool, subscription_id: str) -> dict[str, Any] | None:
    """The subscription's current entitlement set (version, lifecycle version, body), or None."""
    row = await pool.fetchrow(
        "SELECT version, lifecycle_version, body, updated_at FROM entitlements.entitlement_sets "
        "WHERE subscription_id = $1",
        subscription_id,
    )
    return dict(row) if row is not None else None
