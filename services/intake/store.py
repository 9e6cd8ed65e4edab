"""What the intake worker keeps in PostgreSQL (schema ``intake``). Every call runs on the connection
it is given: the handler's (inside its transaction, so the order row, the mapping and the outbox
commit together) or, for the STACKIT poller, its own unit of work's or the pool."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import asyncpg

from shared.db.uow import write


@dataclass(frozen=True)
class CustomerStanding:
    """A customer's credit and tax standing, as stored (what the operators set)."""

    credit_hold: bool
    credit_limit: Decimal | None
    currency: str | None
    country: str | None
    tax_exempt: bool


@dataclass(frozen=True)
class SubscriptionMapping:
    """The internal subscription id of a channel subscription id, and the id that replaced it (if any)."""

    subscription_id: str
    replaced_by: str | None


@dataclass(frozen=True)
class CustomerSighting:
    """The customer an order names: its internal id and what the channel says of it."""

    customer_id: str
    channel_customer_id: str
    email: str | None
    name: str | None


@dataclass(frozen=True)
class OrderContext:
    """What intake reads before deciding an order: the customer's standing and the channel id's mapping."""

    standing: CustomerStanding
    mapping: SubscriptionMapping | None


@dataclass(frozen=True)
class LastCancellation:
    """The latest ``cancel`` or ``uncancel`` order of a channel subscription."""

    action: str
    phase: str | None


@dataclass(frozen=True)
class StackitSnapshot:
    """The stored snapshot of a polled STACKIT subscription and the decision taken on it (if any)."""

    subscription_id: str
    snapshot: Any
    decision: str | None


class IntakeStore(Protocol):
    """Orders seen, customers, the channel-id mapping, rejections and dropped payloads."""

    async def order_context(
        self,
        conn: Any,
        channel: str,
        order_key: str,
        *,
        customer: CustomerSighting,
        channel_subscription_id: str,
    ) -> OrderContext | None:
        """None when the order was recorded before (it then has no second effect). Else the
        customer, created on first sight (else its email and name refreshed), with its standing,
        and the stored mapping of the channel subscription id (None when never seen)."""
        ...

    async def record_dropped(self, conn: Any, channel: str, disposition: str, reason: str | None) -> None:
        """A payload the channel sent that changes nothing (informational, ignored)."""
        ...

    async def record_order(
        self,
        conn: Any,
        channel: str,
        order_key: str,
        *,
        subscription_id: str,
        action: str,
        canonical: dict[str, Any],
    ) -> None:
        """The accepted order (its key makes a redelivery a no-op)."""
        ...

    async def insert_mapping(
        self, conn: Any, channel: str, channel_subscription_id: str, subscription_id: str
    ) -> None:
        """Map a channel id seen for the first time; fails if another transaction mapped it meanwhile."""
        ...

    async def mark_replaced(
        self, conn: Any, channel: str, channel_subscription_id: str, replaced_by: str
    ) -> str | None:
        """Record that ``replaced_by`` replaces a channel id; its internal id, None when unknown."""
        ...

    async def known_subscription(
        self, conn: Any, channel: str, channel_subscription_id: str
    ) -> dict[str, Any] | None:
        """``{"status": <last status_after>}`` of a channel id seen before; None when never seen."""
        ...

    async def last_cancellation(
        self, conn: Any, channel: str, channel_subscription_id: str
    ) -> LastCancellation | None:
        """The latest cancel or uncancel order of a channel id; None when there was none."""
        ...

    async def add_mapping(
        self, conn: Any, channel: str, channel_subscription_id: str, subscription_id: str
    ) -> None:
        """Map a channel id to an internal id, unless it is mapped already."""
        ...

    async def record_rejection(
        self,
        conn: Any,
        channel: str,
        *,
        channel_subscription_id: str | None,
        channel_event_id: str | None,
        reasons: list[dict[str, Any]],
        impact_score: Decimal,
        order_value: Decimal | None,
        currency: str | None,
    ) -> None:
        """A rejected order, for the operators."""
        ...


class StackitSnapshotStore(Protocol):
    """The STACKIT poller's snapshots of the vendor's listing."""

    async def try_poll_lock(self, conn: Any, lock: str) -> bool:
        """Take the transaction's advisory lock named ``lock``; False when another poller holds it."""
        ...

    async def load_snapshots(self, conn: Any, namespace: str, project_id: str) -> list[StackitSnapshot]:
        """Every stored snapshot of the project."""
        ...

    async def save_snapshot(
        self,
        conn: Any,
        namespace: str,
        project_id: str,
        subscription_id: str,
        *,
        lifecycle_state: str | None,
        snapshot: Any,
    ) -> None:
        """Insert or replace a subscription's snapshot."""
        ...

    async def record_decision(
        self,
        conn: Any,
        namespace: str,
        project_id: str,
        subscription_id: str,
        *,
        decision: str,
        reasons: list[dict[str, Any]],
        decided_at: datetime,
    ) -> None:
        """The poller's approve / reject / manual decision on a pending subscription."""
        ...


class PgIntakeStore:
    """:class:`IntakeStore` and :class:`StackitSnapshotStore` on PostgreSQL."""

    async def order_context(
        self,
        conn: asyncpg.Connection,
        channel: str,
        order_key: str,
        *,
        customer: CustomerSighting,
        channel_subscription_id: str,
    ) -> OrderContext | None:
        """None when the order was recorded before; else the customer's standing (created on first
        sight, else email and name refreshed) and the channel id's mapping, in ONE round trip.

        A seen order writes nothing: the customer upsert runs only when the order is new.
        """
        row = await conn.fetchrow(
            "WITH seen AS (SELECT 1 FROM intake.orders WHERE channel = $1 AND order_key = $2), "
            "customer AS (INSERT INTO intake.customers (customer_id, channel, channel_customer_id, email, name) "
            "SELECT $3, $1, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM seen) "
            "ON CONFLICT (customer_id) DO UPDATE SET "
            "email = COALESCE(EXCLUDED.email, intake.customers.email), "
            "name = COALESCE(EXCLUDED.name, intake.customers.name) "
            "RETURNING credit_hold, credit_limit, currency, country, tax_exempt) "
            "SELECT EXISTS (SELECT 1 FROM seen) AS seen, c.*, m.subscription_id, m.replaced_by "
            "FROM (SELECT 1) AS one LEFT JOIN customer c ON true LEFT JOIN intake.channel_subscriptions m "
            "ON m.channel = $1 AND m.channel_subscription_id = $7",
            channel,
            order_key,
            customer.customer_id,
            customer.channel_customer_id,
            customer.email,
            customer.name,
            channel_subscription_id,
        )
        assert row is not None  # the one-row select always answers
        if row["seen"]:
            return None
        standing = CustomerStanding(
            credit_hold=row["credit_hold"],
            credit_limit=row["credit_limit"],
            currency=row["currency"],
            country=row["country"],
            tax_exempt=row["tax_exempt"],
        )
        mapping = (
            SubscriptionMapping(str(row["subscription_id"]), row["replaced_by"])
            if row["subscription_id"] is not None
            else None
        )
        return OrderContext(standing, mapping)

    async def record_dropped(
        self, conn: asyncpg.Connection, channel: str, disposition: str, reason: str | None
    ) -> None:
        """A payload the channel sent that changes nothing (informational, ignored)."""
        await conn.execute(
            "INSERT INTO intake.dropped (channel, disposition, reason) VALUES ($1, $2, $3)",
            channel,
            disposition,
            reason,
        )

    async def record_order(
        self,
        conn: asyncpg.Connection,
        channel: str,
        order_key: str,
        *,
        subscription_id: str,
        action: str,
        canonical: dict[str, Any],
    ) -> None:
        """The accepted order (its key makes a redelivery a no-op): a queued write."""
        await write(
            conn,
            "INSERT INTO intake.orders (channel, order_key, subscription_id, action, canonical) "
            "VALUES ($1, $2, $3, $4, $5)",
            channel,
            order_key,
            subscription_id,
            action,
            canonical,
        )

    async def insert_mapping(
        self, conn: asyncpg.Connection, channel: str, channel_subscription_id: str, subscription_id: str
    ) -> None:
        """Map a channel id seen for the first time: a queued write. No ON CONFLICT: when another
        transaction mapped the id meanwhile, the message fails and its retry reads that mapping."""
        await write(
            conn,
            "INSERT INTO intake.channel_subscriptions (channel, channel_subscription_id, subscription_id) "
            "VALUES ($1, $2, $3)",
            channel,
            channel_subscription_id,
            subscription_id,
        )

    async def mark_replaced(
        self, conn: asyncpg.Connection, channel: str, channel_subscription_id: str, replaced_by: str
    ) -> str | None:
        """Record that ``replaced_by`` replaces a channel id; its internal id, None when unknown."""
        subscription_id: str | None = await conn.fetchval(
            "UPDATE intake.channel_subscriptions SET replaced_by = $3 "
            "WHERE channel = $1 AND channel_subscription_id = $2 RETURNING subscription_id",
            channel,
            channel_subscription_id,
            replaced_by,
        )
        return subscription_id

    async def known_subscription(
        self, conn: asyncpg.Connection, channel: str, channel_subscription_id: str
    ) -> dict[str, Any] | None:
        """``{"status": <last status_after>}`` of a channel id seen before; None when never seen.

        What the receiver already knows of a subscription, for snapshots (8a rule 9).
        """
        row = await conn.fetchrow(
            "SELECT canonical->>'status_after' AS status FROM intake.orders "
            "WHERE channel = $1 AND canonical->>'channel_subscription_id' = $2 "
            "ORDER BY received_at DESC, order_key DESC LIMIT 1",
            channel,
            channel_subscription_id,
        )
        if row is None:
            mapped = await conn.fetchval(
                "SELECT 1 FROM intake.channel_subscriptions WHERE channel = $1 AND channel_subscription_id = $2",
                channel,
                channel_subscription_id,
            )
            return {"status": None} if mapped else None
        return {"status": row["status"]}

    async def last_cancellation(
        self, conn: asyncpg.Connection, channel: str, channel_subscription_id: str
    ) -> LastCancellation | None:
        """The latest cancel or uncancel order of a channel id; None when there was none."""
        row = await conn.fetchrow(
            "SELECT action, canonical->>'phase' AS phase FROM intake.orders "
            "WHERE channel = $1 AND canonical->>'channel_subscription_id' = $2 "
            "AND action IN ('cancel', 'uncancel') ORDER BY received_at DESC, order_key DESC LIMIT 1",
            channel,
            channel_subscription_id,
        )
        return LastCancellation(row["action"], row["phase"]) if row else None

    async def add_mapping(
        self, conn: asyncpg.Connection, channel: str, channel_subscription_id: str, subscription_id: str
    ) -> None:
        """Map a channel id to an internal id, unless it is mapped already."""
        await conn.execute(
            "INSERT INTO intake.channel_subscriptions (channel, channel_subscription_id, subscription_id) "
            "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            channel,
            channel_subscription_id,
            subscription_id,
        )

    async def record_rejection(
        self,
        conn: asyncpg.Connection,
        channel: str,
        *,
        channel_subscription_id: str | None,
        channel_event_id: str | None,
        reasons: list[dict[str, Any]],
        impact_score: Decimal,
        order_value: Decimal | None,
        currency: str | None,
    ) -> None:
        """A rejected order, for the operators."""
        await conn.execute(
            "INSERT INTO intake.rejections (channel, channel_subscription_id, channel_event_id, reasons, "
            "impact_score, order_value, currency) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            channel,
            channel_subscription_id,
            channel_event_id,
            reasons,
            impact_score,
            order_value,
            currency,
        )

    # -- STACKIT poller ---------------------------------------------------------------------------

    async def try_poll_lock(self, conn: asyncpg.Connection, lock: str) -> bool:
        """Take the transaction's advisory lock named ``lock``; False when another poller holds it."""
        return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", lock))

    async def load_snapshots(
        self, conn: asyncpg.Connection, namespace: str, project_id: str
    ) -> list[StackitSnapshot]:
        """Every stored snapshot of the project."""
        rows = await conn.fetch(
            "SELECT subscription_id, snapshot, decision FROM intake.stackit_snapshots "
            "WHERE namespace = $1 AND project_id = $2",
            namespace,
            project_id,
        )
        return [StackitSnapshot(r["subscription_id"], r["snapshot"], r["decision"]) for r in rows]

    async def save_snapshot(
        self,
        conn: asyncpg.Connection,
        namespace: str,
        project_id: str,
        subscription_id: str,
        *,
        lifecycle_state: str | None,
        snapshot: Any,
    ) -> None:
        """Insert or replace a subscription's snapshot."""
        await conn.execute(
            "INSERT INTO intake.stackit_snapshots (namespace, project_id, subscription_id, "
            "lifecycle_state, snapshot) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (namespace, project_id, subscription_id) DO UPDATE SET "
            "lifecycle_state = EXCLUDED.lifecycle_state, snapshot = EXCLUDED.snapshot, changed_at = now()",
            namespace,
            project_id,
            subscription_id,
            lifecycle_state,
            snapshot,
        )

    async def record_decision(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        namespace: str,
        project_id: str,
        subscription_id: str,
        *,
        decision: str,
        reasons: list[dict[str, Any]],
        decided_at: datetime,
    ) -> None:
        """The poller's approve / reject / manual decision on a pending subscription."""
        await conn.execute(
            "UPDATE intake.stackit_snapshots SET decision = $4, decision_reasons = $5, decided_at = $6 "
            "WHERE namespace = $1 AND project_id = $2 AND subscription_id = $3",
            namespace,
            project_id,
            subscription_id,
            decision,
            reasons,
            decided_at,
        )
