"""In-memory fakes of a handler's unit of work and stores: handlers run in milliseconds, no broker or
database. Only what the handlers call is faked; the real stores are covered by the integration tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.intake.store import (
    CustomerSighting,
    CustomerStanding,
    LastCancellation,
    OrderContext,
    SubscriptionMapping,
)
from shared import timekeeping
from shared.contracts.envelope import CloudEvent


@dataclass
class FakeUnitOfWork:
    """Collects emitted events in memory, as the outbox would at commit."""

    service: str = "test"
    namespace: str = ""
    conn: Any = None  # the fake stores ignore the connection
    emitted: list[tuple[str, CloudEvent]] = field(default_factory=list)

    def emit(self, topic: str, event: CloudEvent, *, key: str | None = None) -> None:
        """Queue ``event`` for ``topic``."""
        self.emitted.append((topic, event))

    async def flush_writes(self) -> None:
        """The fake stores write at once: nothing is queued."""


@dataclass
class FakeIntakeStore:
    """The intake tables in dicts and lists: orders by (channel, order key), customers, the mapping
    of channel subscription ids, rejections and dropped payloads."""

    orders: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    mappings: dict[tuple[str, str], SubscriptionMapping] = field(default_factory=dict)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def record_dropped(self, conn: Any, channel: str, disposition: str, reason: str | None) -> None:
        """Keep the dropped payload's disposition."""
        self.dropped.append((channel, disposition, reason))

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
        """Insert the order; a second insert of the same key fails like the primary key would."""
        if (channel, order_key) in self.orders:
            raise AssertionError(f"duplicate order {channel}/{order_key}")
        self.orders[(channel, order_key)] = {
            "subscription_id": subscription_id,
            "action": action,
            "canonical": canonical,
        }

    async def order_context(
        self,
        conn: Any,
        channel: str,
        order_key: str,
        *,
        customer: CustomerSighting,
        channel_subscription_id: str,
    ) -> OrderContext | None:
        """None for a recorded order; else the customer (created on first sight with the table's
        defaults, else email and name refreshed as the upsert's COALESCE) and the stored mapping."""
        if (channel, order_key) in self.orders:
            return None
        row = self.customers.setdefault(
            customer.customer_id,
            {
                "channel": channel,
                "channel_customer_id": customer.channel_customer_id,
                "email": None,
                "name": None,
                "country": None,
                "credit_hold": False,
                "credit_limit": None,
                "currency": None,
                "tax_exempt": False,
            },
        )
        row["email"] = customer.email if customer.email is not None else row["email"]
        row["name"] = customer.name if customer.name is not None else row["name"]
        standing = CustomerStanding(
            credit_hold=row["credit_hold"],
            credit_limit=row["credit_limit"],
            currency=row["currency"],
            country=row["country"],
            tax_exempt=row["tax_exempt"],
        )
        return OrderContext(standing, self.mappings.get((channel, channel_subscription_id)))

    async def insert_mapping(
        self, conn: Any, channel: str, channel_subscription_id: str, subscription_id: str
    ) -> None:
        """A new mapping; a second one of the same id fails like the primary key would."""
        if (channel, channel_subscription_id) in self.mappings:
            raise AssertionError(f"duplicate mapping {channel}/{channel_subscription_id}")
        self.mappings[(channel, channel_subscription_id)] = SubscriptionMapping(subscription_id, None)

    async def mark_replaced(
        self, conn: Any, channel: str, channel_subscription_id: str, replaced_by: str
    ) -> str | None:
        """Record the replacing id on the replaced one's mapping."""
        current = self.mappings.get((channel, channel_subscription_id))
        if current is None:
            return None
        self.mappings[(channel, channel_subscription_id)] = SubscriptionMapping(
            current.subscription_id, replaced_by
        )
        return current.subscription_id

    async def known_subscription(
        self, conn: Any, channel: str, channel_subscription_id: str
    ) -> dict[str, Any] | None:
        """``{"status": <last status_after>}`` of a channel id seen before; None when never seen."""
        found: dict[str, Any] | None = None
        for (ch, _), order in self.orders.items():
            canonical = order["canonical"]
            if ch == channel and canonical.get("channel_subscription_id") == channel_subscription_id:
                found = {"status": canonical.get("status_after")}
        return found

    async def last_cancellation(
        self, conn: Any, channel: str, channel_subscription_id: str
    ) -> LastCancellation | None:
        """The latest cancel or uncancel order of the channel id (insertion order is arrival order)."""
        found = None
        for (ch, _), order in self.orders.items():
            canonical = order["canonical"]
            if (
                ch == channel
                and canonical.get("channel_subscription_id") == channel_subscription_id
                and order["action"] in ("cancel", "uncancel")
            ):
                found = LastCancellation(order["action"], canonical.get("phase"))
        return found

    async def add_mapping(
        self, conn: Any, channel: str, channel_subscription_id: str, subscription_id: str
    ) -> None:
        """Map the channel id unless it is mapped already."""
        self.mappings.setdefault(
            (channel, channel_subscription_id), SubscriptionMapping(subscription_id, None)
        )

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
        """Keep the rejection row."""
        self.rejections.append(
            {
                "channel": channel,
                "channel_subscription_id": channel_subscription_id,
                "channel_event_id": channel_event_id,
                "reasons": reasons,
                "impact_score": impact_score,
                "order_value": order_value,
                "currency": currency,
            }
        )


@dataclass
class FakeTimer:
    """A stored timer: what was scheduled, and whether it was cancelled since."""

    timer: timekeeping.Timer
    cancelled: bool = False


@dataclass
class FakeLifecycleStore:
    """The lifecycle tables in dicts and lists, plus test clocks and timers (``shared.timekeeping``'s
    part of the Postgres store)."""

    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    command_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    clocks: dict[str, datetime] = field(default_factory=dict)
    timers: list[FakeTimer] = field(default_factory=list)

    async def claim_command_and_load(
        self, conn: Any, idempotency_key: str, subscription_id: str
    ) -> tuple[bool, dict[str, Any] | None]:
        """(True, state) the first time a key is seen; state None for a new subscription."""
        row = self.subscriptions.get(subscription_id)
        state = dict(row["state"]) if row else None
        if idempotency_key in self.command_keys:
            return False, state
        self.command_keys[idempotency_key] = {"subscription_id": subscription_id, "outcome": "pending"}
        return True, state

    async def set_command_outcome(self, conn: Any, idempotency_key: str, outcome: str) -> None:
        """Record how the command ended."""
        self.command_keys[idempotency_key]["outcome"] = outcome

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
        """Insert at version 1 with its owner; a second insert fails like the primary key would."""
        if subscription_id in self.subscriptions:
            raise AssertionError(f"duplicate subscription {subscription_id}")
        self.subscriptions[subscription_id] = {
            "status": status,
            "version": 1,
            "channel": channel,
            "customer_id": customer_id,
            "plan_id": plan_id,
            "state": state,
        }
        if owner is not None:
            self.users.setdefault((subscription_id, owner[0]), {"email": owner[1], "role": "owner"})

    async def update(
        self, conn: Any, subscription_id: str, *, status: str, plan_id: str, state: dict[str, Any]
    ) -> int:
        """Store the new state at the next version."""
        row = self.subscriptions[subscription_id]
        row.update(status=status, plan_id=plan_id, state=state, version=row["version"] + 1)
        return int(row["version"])

    async def append_audit(self, conn: Any, subscription_id: str, **entry: Any) -> None:
        """Append the audit row."""
        self.audit.append({"subscription_id": subscription_id, **entry})

    async def record_instance(
        self, conn: Any, subscription_id: str, instance_id: str, status: str, reported_at: datetime
    ) -> None:
        """Keep the newest report of an instance."""
        current = self.instances.get((subscription_id, instance_id))
        if current is None or current["reported_at"] <= reported_at:
            self.instances[(subscription_id, instance_id)] = {"status": status, "reported_at": reported_at}

    async def clock_now(self, conn: Any, clock: str) -> datetime:
        """The wall clock for ``system``, else the test clock's time; KeyError when unknown."""
        if clock == timekeeping.SYSTEM_CLOCK:
            return datetime.now(UTC)
        if clock not in self.clocks:
            raise KeyError(f"no clock named {clock!r}")
        return self.clocks[clock]

    async def cancel_timers(self, uow: Any, subscription_id: str, kinds: list[str]) -> None:
        """Cancel the subscription's pending timers of ``kinds``."""
        for t in self.timers:
            if t.timer.subscription_id == subscription_id and t.timer.kind in kinds:
                t.cancelled = True

    async def schedule_timers(self, uow: Any, timers: Sequence[timekeeping.Timer]) -> None:
        """Add the timers."""
        self.timers.extend(FakeTimer(t) for t in timers)

    def pending_timers(self, subscription_id: str) -> list[timekeeping.Timer]:
        """Timers of the subscription not cancelled (none fires in a component test)."""
        return [
            t.timer for t in self.timers if not t.cancelled and t.timer.subscription_id == subscription_id
        ]
