"""Read-only queries on the ``entitlements`` schema for operators' tools (the console)."""

from __future__ import annotations

from typing import Any

import asyncpg


async def entitlement_set(pool: asyncpg.Pool, subscription_id: str) -> dict[str, Any] | None:
    """The subscription's current entitlement set (version, lifecycle version, body), or None."""
    row = await pool.fetchrow(
        "SELECT version, lifecycle_version, body, updated_at FROM entitlements.entitlement_sets "
        "WHERE subscription_id = $1",
        subscription_id,
    )
    return dict(row) if row is not None else None
