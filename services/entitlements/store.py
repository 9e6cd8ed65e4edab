"""What the entitlements worker keeps in PostgreSQL (schema ``entitlements``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg


@dataclass(frozen=True)
class EntitlementRecord:
    """The last entitlement set published for a subscription."""

    version: int
    lifecycle_version: int
    body: dict[str, Any]


class EntitlementStore(Protocol):
    """The entitlement sets; every call runs on the handler's connection (its transaction)."""

    async def load(self, conn: Any, subscription_id: str) -> EntitlementRecord | None:
        """The subscription's set, locked for the transaction; None when there is none yet."""
        ...

    async def touch(self, conn: Any, subscription_id: str, lifecycle_version: int) -> None:
        """Record that ``lifecycle_version`` was applied without changing the set."""
        ...

    async def save(
        self, conn: Any, subscription_id: str, version: int, lifecycle_version: int, body: dict[str, Any]
    ) -> None:
        """Insert or replace the subscription's set."""
        ...


class PgEntitlementStore:
    """:class:`EntitlementStore` on PostgreSQL."""

    async def load(self, conn: asyncpg.Connection, subscription_id: str) -> EntitlementRecord | None:
        """The subscription's set, locked for the transaction; None when there is none yet."""
        row = await conn.fetchrow(
            "SELECT version, lifecycle_version, body FROM entitlements.entitlement_sets "
            "WHERE subscription_id = $1 FOR UPDATE",
            subscription_id,
        )
        if row is None:
            return None
        return EntitlementRecord(row["version"], row["lifecycle_version"], row["body"])

    async def touch(self, conn: asyncpg.Connection, subscription_id: str, lifecycle_version: int) -> None:
        """Record that ``lifecycle_version`` was applied without changing the set."""
        await conn.execute(
            "UPDATE entitlements.entitlement_sets SET lifecycle_version = $2 WHERE subscription_id = $1",
            subscription_id,
            lifecycle_version,
        )

    async def save(
        self,
        conn: asyncpg.Connection,
        subscription_id: str,
        version: int,
        lifecycle_version: int,
        body: dict[str, Any],
    ) -> None:
        """Insert or replace the subscription's set."""
        await conn.execute(
            "INSERT INTO entitlements.entitlement_sets (subscription_id, version, lifecycle_version, body) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (subscription_id) DO UPDATE SET version = EXCLUDED.version, "
            "lifecycle_version = EXCLUDED.lifecycle_version, body = EXCLUDED.body, updated_at = now()",
            subscription_id,
            version,
            lifecycle_version,
            body,
        )
