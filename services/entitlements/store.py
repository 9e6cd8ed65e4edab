"""What the entitlements worker keeps in PostgreSQL (schema ``entitlements``).

Every call runs on the handler's connection, inside its transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from services.entitlements.domain.entitlements import Override, SubscriptionInputs
from shared.db.pool import json_texts
from shared.db.uow import write


@dataclass(frozen=True)
class EntitlementRecord:
    """The last set published for a subscription, and the lifecycle snapshot it came from."""

    version: int
    lifecycle_version: int
    body: dict[str, Any]
    inputs: SubscriptionInputs | None = None


@dataclass(frozen=True)
class LockedCustomer:
    """The customer's merged set as stored, read under its row lock."""

    version: int  # 0 before the first
    body: dict[str, Any]
    effective_at: datetime | None  # business time of the last recompute
    next_boundary: datetime | None  # when its re-evaluation timer is due


@dataclass(frozen=True)
class HistoryRow:
    """One published set, with its cause."""

    scope: str  # subscription or customer
    customer_id: str
    subscription_id: str | None
    version: int
    previous_version: int
    body: dict[str, Any]
    effective_at: datetime
    cause_event_id: str
    cause_command: str
    cause_actor: str


@dataclass(frozen=True)
class SavedSet:
    """A subscription's set to store (a new version, or new inputs under the same version)."""

    subscription_id: str
    version: int
    lifecycle_version: int
    body: dict[str, Any]
    inputs: SubscriptionInputs


@dataclass(frozen=True)
class SavedCustomer:
    """The customer's new merged set."""

    customer_id: str
    version: int
    body: dict[str, Any]
    effective_at: datetime


@dataclass(frozen=True)
class CustomerState:
    """What a recompute reads about a customer, read under its row lock."""

    locked: LockedCustomer
    subscriptions: dict[str, EntitlementRecord]
    overrides: list[Override]
    legacy: tuple[int, int] | None  # (version, lifecycle version) of the asked subscription's set


def _time(raw: Any) -> datetime | None:
    return datetime.fromisoformat(raw) if isinstance(raw, str) else raw


class PgEntitlementStore:
    """The entitlement sets, their history and the overrides, on PostgreSQL."""

    async def lock_customer_state(
        self, conn: asyncpg.Connection, customer_id: str, subscription_id: str | None = None
    ) -> CustomerState:
        """The customer's merged set (version 0 and ``{}`` before the first), locked for the
        transaction, with its subscriptions' sets, its overrides and the version of
        ``subscription_id``'s set (also one stored before customers were recorded), read after the
        lock in one round trip (``migrations/0007``).

        Every change of a customer's entitlements takes this lock first, so concurrent changes to
        two of its subscriptions run one after the other and the second sees the first.
        """
        raw = await conn.fetchval(
            "SELECT entitlements.lock_customer_state($1, $2)", customer_id, subscription_id
        )
        data = json.loads(raw) if isinstance(raw, str) else raw
        legacy = data["legacy"]
        return CustomerState(
            locked=LockedCustomer(
                int(data["version"]),
                dict(data["body"]),
                _time(data["effective_at"]),
                _time(data["next_boundary"]),
            ),
            subscriptions={
                r["subscription_id"]: EntitlementRecord(
                    int(r["version"]),
                    int(r["lifecycle_version"]),
                    dict(r["body"]),
                    SubscriptionInputs.from_json(r["inputs"]),
                )
                for r in data["subscriptions"]
            },
            overrides=[
                override_of({**o, "starts_at": _time(o["starts_at"]), "until": _time(o["until"])})
                for o in data["overrides"]
            ],
            legacy=(int(legacy[0]), int(legacy[1])) if legacy is not None else None,
        )

    async def set_boundary(self, conn: asyncpg.Connection, customer_id: str, due: datetime | None) -> None:
        """Remember when the customer's re-evaluation timer is due."""
        await conn.execute(
            "UPDATE entitlements.customer_sets SET next_boundary = $2 WHERE customer_id = $1",
            customer_id,
            due,
        )

    async def customer_of(self, conn: asyncpg.Connection, subscription_id: str) -> str | None:
        """The customer a subscription's set belongs to, if known."""
        value = await conn.fetchval(
            "SELECT customer_id FROM entitlements.entitlement_sets WHERE subscription_id = $1",
            subscription_id,
        )
        return str(value) if value is not None else None

    async def subscriptions_of(
        self, conn: asyncpg.Connection, customer_id: str
    ) -> dict[str, EntitlementRecord]:
        """Every subscription set of the customer (call with the customer locked)."""
        rows = await conn.fetch(
            "SELECT subscription_id, version, lifecycle_version, body, inputs FROM entitlements.entitlement_sets "
            "WHERE customer_id = $1 AND inputs IS NOT NULL",
            customer_id,
        )
        return {
            r["subscription_id"]: EntitlementRecord(
                r["version"],
                r["lifecycle_version"],
                dict(r["body"]),
                SubscriptionInputs.from_json(r["inputs"]),
            )
            for r in rows
        }

    async def save_all(
        self,
        conn: asyncpg.Connection,
        sets: Sequence[SavedSet],
        customer: SavedCustomer | None,
        history: Sequence[HistoryRow],
    ) -> None:
        """Write a recompute: the subscription sets (insert or replace), the customer's merged set
        (its row exists: :meth:`lock_customer_state` made it) and the history rows (append-only).

        Queued writes (see :func:`shared.db.uow.write`): they run in the one statement that ends the
        handler, with its user changes and timers.
        """
        if sets:
            await write(
                conn,
                "INSERT INTO entitlements.entitlement_sets AS e "
                "(subscription_id, customer_id, version, lifecycle_version, body, inputs) "
                "SELECT s, c, v, l, b::jsonb, i::jsonb FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[], "
                "$6::text[]) AS x(s, c, v, l, b, i) "
                "ON CONFLICT (subscription_id) DO UPDATE SET "
                "customer_id = EXCLUDED.customer_id, version = EXCLUDED.version, "
                "lifecycle_version = EXCLUDED.lifecycle_version, body = EXCLUDED.body, inputs = EXCLUDED.inputs, "
                "updated_at = now(), published_at = CASE WHEN EXCLUDED.version <> e.version "
                "THEN now() ELSE e.published_at END",
                [x.subscription_id for x in sets],
                [x.inputs.customer_id for x in sets],
                [x.version for x in sets],
                [x.lifecycle_version for x in sets],
                json_texts(x.body for x in sets),
                json_texts(x.inputs.as_json() for x in sets),
            )
        if customer is not None:
            await write(
                conn,
                "UPDATE entitlements.customer_sets SET version = $2, body = $3, effective_at = $4, "
                "updated_at = now() WHERE customer_id = $1",
                customer.customer_id,
                customer.version,
                customer.body,
                customer.effective_at,
            )
        if history:
            await write(
                conn,
                "INSERT INTO entitlements.history (scope, customer_id, subscription_id, version, "
                "previous_version, body, effective_at, cause_event_id, cause_command, cause_actor) "
                "SELECT s, c, u, v, p, b::jsonb, e, ce, cc, ca FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], "
                "$5::int[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[]) "
                "AS x(s, c, u, v, p, b, e, ce, cc, ca)",
                [r.scope for r in history],
                [r.customer_id for r in history],
                [r.subscription_id for r in history],
                [r.version for r in history],
                [r.previous_version for r in history],
                json_texts(r.body for r in history),
                [r.effective_at for r in history],
                [r.cause_event_id for r in history],
                [r.cause_command for r in history],
                [r.cause_actor for r in history],
            )

    async def overrides(self, conn: asyncpg.Connection, customer_id: str) -> list[Override]:
        """Every override ever granted to the customer or one of its subscriptions."""
        rows = await conn.fetch(
            "SELECT override_id, customer_id, subscription_id, feature, value, starts_at, until, reason, actor "
            "FROM entitlements.overrides WHERE customer_id = $1 ORDER BY override_id",
            customer_id,
        )
        return [override_of(r) for r in rows]

    async def add_override(self, conn: asyncpg.Connection, o: Override) -> bool:
        """Record a grant; False when this override id was recorded before (a repeated command)."""
        status = await conn.execute(
            "INSERT INTO entitlements.overrides (override_id, customer_id, subscription_id, feature, value, "
            "starts_at, until, reason, actor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            o.override_id,
            o.customer_id,
            o.subscription_id,
            o.feature,
            o.value,
            o.starts_at,
            o.until,
            o.reason,
            o.actor,
        )
        return str(status).endswith(" 1")


def override_of(r: Any) -> Override:
    """An override from its row."""
    return Override(
        override_id=r["override_id"],
        customer_id=r["customer_id"],
        subscription_id=r["subscription_id"],
        feature=r["feature"],
        value=int(r["value"]) if r["value"] is not None else None,
        starts_at=r["starts_at"],
        until=r["until"],
        reason=r["reason"],
        actor=r["actor"],
    )


class PgUserStore:
    """Users and roles per subscription, with their append-only audit."""

    async def set_user(
        self,
        conn: asyncpg.Connection,
        *,
        subscription_id: str,
        customer_id: str,
        email: str,
        role: str | None,
        actor: str,
        reason: str | None,
        cause_event_id: str,
    ) -> None:
        """Give ``email`` a role on the subscription (``role`` None: remove it), and audit the change.

        Two queued writes (see :func:`shared.db.uow.write`): the handler's other writes carry them,
        so a user change costs no round trip of its own. One handler changing the same email twice
        flushes in between (one statement cannot change a row twice).
        """
        if role is None:
            await write(
                conn,
                "UPDATE entitlements.subscription_users SET removed = true, updated_at = now() "
                "WHERE subscription_id = $1 AND email = $2",
                subscription_id,
                email,
            )
        else:
            await write(
                conn,
                "INSERT INTO entitlements.subscription_users (subscription_id, customer_id, email, role) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (subscription_id, email) DO UPDATE SET "
                "role = EXCLUDED.role, removed = false, updated_at = now()",
                subscription_id,
                customer_id,
                email,
                role,
            )
        await write(
            conn,
            "INSERT INTO entitlements.user_audit (subscription_id, customer_id, email, action, role, actor, reason, "
            "cause_event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            subscription_id,
            customer_id,
            email,
            "remove" if role is None else "add",
            role,
            actor,
            reason,
            cause_event_id,
        )


class PgSyncStore:
    """Acknowledgements, instances and instructions of the acknowledged sync with provisioning."""

    async def ack_version(self, conn: asyncpg.Connection, subscription_id: str, version: int) -> None:
        """Provisioning applied ``version``; an older acknowledgement than the one held changes nothing."""
        await conn.execute(
            "UPDATE entitlements.entitlement_sets SET applied_version = GREATEST(applied_version, $2) "
            "WHERE subscription_id = $1",
            subscription_id,
            version,
        )

    async def ack_instruction(self, conn: asyncpg.Connection, instruction_id: str) -> None:
        """Provisioning carried out an instruction."""
        await conn.execute(
            "UPDATE entitlements.instructions SET acknowledged_at = now() "
            "WHERE instruction_id = $1 AND acknowledged_at IS NULL",
            instruction_id,
        )

    async def record_instance(
        self, conn: asyncpg.Connection, subscription_id: str, instance_id: str, status: str, at: datetime
    ) -> None:
        """Keep the latest reported status of an instance (an older report changes nothing)."""
        await conn.execute(
            "INSERT INTO entitlements.instances (subscription_id, instance_id, status, reported_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (subscription_id, instance_id) DO UPDATE SET "
            "status = EXCLUDED.status, reported_at = EXCLUDED.reported_at "
            "WHERE entitlements.instances.reported_at <= EXCLUDED.reported_at",
            subscription_id,
            instance_id,
            status,
            at,
        )

    async def running_instances(self, conn: asyncpg.Connection, subscription_id: str) -> list[str]:
        """Instances of the subscription not reported gone."""
        rows = await conn.fetch(
            "SELECT instance_id FROM entitlements.instances WHERE subscription_id = $1 "
            "AND status NOT IN ('deleted', 'terminated', 'failed') ORDER BY instance_id",
            subscription_id,
        )
        return [r["instance_id"] for r in rows]

    async def add_instruction(
        self,
        conn: asyncpg.Connection,
        instruction_id: str,
        kind: str,
        subscription_id: str,
        customer_id: str,
        effective_at: datetime,
    ) -> bool:
        """Record an instruction; False when it was recorded before."""
        status = await conn.execute(
            "INSERT INTO entitlements.instructions (instruction_id, kind, subscription_id, customer_id, "
            "effective_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            instruction_id,
            kind,
            subscription_id,
            customer_id,
            effective_at,
        )
        return str(status).endswith(" 1")

    async def claim_unacknowledged(
        self, conn: asyncpg.Connection, older_than_seconds: float, limit: int = 500
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Sets and instructions published longer ago than the timeout and not acknowledged, stamped
        re-published now (locked: another replica takes others)."""
        sets = await conn.fetch(
            "UPDATE entitlements.entitlement_sets s SET published_at = now(), republished = s.republished + 1 "
            "FROM (SELECT subscription_id FROM entitlements.entitlement_sets WHERE version > applied_version "
            "AND published_at < now() - make_interval(secs => $1) ORDER BY published_at LIMIT $2 "
            "FOR UPDATE SKIP LOCKED) due WHERE s.subscription_id = due.subscription_id "
            "RETURNING s.subscription_id, s.version, s.body, s.republished, s.updated_at",
            older_than_seconds,
            limit,
        )
        instructions = await conn.fetch(
            "UPDATE entitlements.instructions i SET published_at = now(), republished = i.republished + 1 "
            "FROM (SELECT instruction_id FROM entitlements.instructions WHERE acknowledged_at IS NULL "
            "AND published_at < now() - make_interval(secs => $1) ORDER BY published_at LIMIT $2 "
            "FOR UPDATE SKIP LOCKED) due WHERE i.instruction_id = due.instruction_id "
            "RETURNING i.instruction_id, i.kind, i.subscription_id, i.customer_id, i.effective_at, i.republished",
            older_than_seconds,
            limit,
        )
        return [dict(r) for r in sets], [dict(r) for r in instructions]

    async def unacknowledged(self, conn: asyncpg.Connection | asyncpg.Pool) -> tuple[int, int, float]:
        """Sets and instructions not acknowledged, and the age in seconds of the oldest such change."""
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM entitlements.entitlement_sets WHERE version > applied_version) AS sets, "
            "(SELECT count(*) FROM entitlements.instructions WHERE acknowledged_at IS NULL) AS instructions, "
            "EXTRACT(EPOCH FROM now() - (SELECT min(updated_at) FROM entitlements.entitlement_sets "
            "WHERE version > applied_version)) AS oldest"
        )
        assert row is not None
        return int(row["sets"]), int(row["instructions"]), float(row["oldest"] or 0)


class PgUsageStore:
    """Usage reports and the per-period counters of counted limits."""

    async def record_report(self, conn: asyncpg.Connection, r: Any) -> bool:
        """Keep a usage report; False when its id was seen before (it counts once)."""
        status = await conn.execute(
            "INSERT INTO entitlements.usage_reports (usage_id, customer_id, feature, quantity, occurred_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            r.usage_id,
            r.customer_id,
            r.feature,
            r.quantity,
            r.occurred_at,
        )
        return str(status).endswith(" 1")

    async def add(
        self, conn: asyncpg.Connection, customer_id: str, feature: str, period_start: date, quantity: int
    ) -> tuple[int, frozenset[int]]:
        """Add to the period's counter (row-locked for the transaction); returns the total and the
        thresholds already raised this period."""
        row = await conn.fetchrow(
            "INSERT INTO entitlements.usage_counters (customer_id, feature, period_start, used) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id, feature, period_start) DO UPDATE "
            "SET used = entitlements.usage_counters.used + EXCLUDED.used RETURNING used, raised",
            customer_id,
            feature,
            period_start,
            quantity,
        )
        assert row is not None
        return int(row["used"]), frozenset(row["raised"])

    async def mark_raised(
        self,
        conn: asyncpg.Connection,
        customer_id: str,
        feature: str,
        period_start: date,
        thresholds: list[int],
    ) -> None:
        """Remember thresholds raised this period."""
        await conn.execute(
            "UPDATE entitlements.usage_counters SET raised = raised || $4::int[] "
            "WHERE customer_id = $1 AND feature = $2 AND period_start = $3",
            customer_id,
            feature,
            period_start,
            thresholds,
        )

    async def customer_limit(self, conn: asyncpg.Connection, customer_id: str, feature: str) -> int:
        """The customer's current limit of ``feature`` (0 when it has none)."""
        value = await conn.fetchval(
            "SELECT (body->'limits'->>$2)::bigint FROM entitlements.customer_sets WHERE customer_id = $1",
            customer_id,
            feature,
        )
        return int(value or 0)
