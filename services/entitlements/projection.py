"""The check API: customer sets held in memory by each entitlements process, answered over HTTP.

A background task copies changed customer sets from PostgreSQL into a dict; a check never waits
for the database. When the database does not answer, the last known sets are served flagged
``stale: true`` until a refresh succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.entitlements.domain.entitlements import user_body
from shared.catalog import Catalog
from shared.messaging.faults import faults

log = logging.getLogger("som.entitlements.projection")
FAULT_POINT = "entitlements_projection_db_unavailable"
_CUSTOMER = re.compile(r"^/v1/customers/([^/?]+)/entitlements(?:/([^/?]+))?/?(?:\?.*)?$")
_USER = re.compile(r"^/v1/customers/([^/?]+)/users/([^/?]+)/entitlements/?(?:\?.*)?$")


@dataclass(frozen=True)
class Held:
    """One customer's set as held in memory."""

    version: int
    body: dict[str, Any]
    updated_at: datetime


class EntitlementProjection:
    """Customer sets in memory, refreshed from PostgreSQL in the background."""

    def __init__(self, pool: asyncpg.Pool, catalog: Catalog, *, poll_seconds: float = 0.2) -> None:
        self.pool = pool
        self.catalog = catalog
        self.poll_seconds = poll_seconds
        self.sets: dict[str, Held] = {}
        self.subscription_sets: dict[str, dict[str, Held]] = {}  # customer -> subscription -> set
        self.roles: dict[str, dict[str, dict[str, str]]] = {}  # customer -> user -> subscription -> role
        # xmin of the last read's snapshot, per table (None: nothing read yet, read everything).
        self.horizon_customers: int | None = None
        self.horizon_subscriptions: int | None = None
        self.horizon_users: int | None = None
        self.as_of: datetime | None = None  # last refresh that reached the database
        self.stale = True  # nothing confirmed yet

    async def refresh(self) -> int:
        """Copy sets and users changed since the last refresh; returns how many changed.

        Each read returns, in the same statement, its snapshot's xmin (the oldest transaction still
        in progress). Anything not yet visible was written by a transaction at or above it, so the
        next read asks for ``changed_xid >= that xmin``: nothing is missed, and under load a read
        returns the last moments' changes, not a window of seconds (``migrations/0008``).
        """
        if faults.fires(FAULT_POINT):
            raise ConnectionRefusedError("database unavailable (injected fault)")
        checked = datetime.now(UTC)
        rows, self.horizon_customers = await self._changed(
            "SELECT customer_id, version, body, updated_at FROM entitlements.customer_sets WHERE version > 0",
            self.horizon_customers,
        )
        changed = 0
        for r in rows:
            held = self.sets.get(r["customer_id"])
            if held is None or r["version"] > held.version:
                self.sets[r["customer_id"]] = Held(r["version"], dict(r["body"]), r["updated_at"])
                changed += 1
        rows, self.horizon_subscriptions = await self._changed(
            "SELECT customer_id, subscription_id, version, body, updated_at FROM entitlements.entitlement_sets "
            "WHERE customer_id IS NOT NULL",
            self.horizon_subscriptions,
        )
        for r in rows:
            subs = self.subscription_sets.setdefault(r["customer_id"], {})
            held = subs.get(r["subscription_id"])
            if held is None or r["version"] > held.version:
                subs[r["subscription_id"]] = Held(r["version"], dict(r["body"]), r["updated_at"])
                changed += 1
        users, self.horizon_users = await self._changed(
            "SELECT customer_id, subscription_id, email, role, removed, updated_at "
            "FROM entitlements.subscription_users WHERE true",
            self.horizon_users,
        )
        for u in sorted(users, key=lambda u: u["updated_at"]):
            by_sub = self.roles.setdefault(u["customer_id"], {}).setdefault(u["email"], {})
            if u["removed"]:
                by_sub.pop(u["subscription_id"], None)
            else:
                by_sub[u["subscription_id"]] = u["role"]
        self.as_of, self.stale = checked, False
        return changed + len(users)

    async def _changed(self, select: str, horizon: int | None) -> tuple[list[asyncpg.Record], int]:
        """Rows of ``select`` (which ends in a WHERE clause) changed at or after ``horizon`` (all
        when None), and the horizon for the next call, read in the same snapshot."""
        since = "" if horizon is None else " AND changed_xid >= $1::text::xid8"
        rows = await self.pool.fetch(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon, c.* FROM (SELECT 1) AS one "
            f"LEFT JOIN ({select}{since}) AS c ON true",
            *(() if horizon is None else (str(horizon),)),
        )
        next_horizon = int(rows[0]["horizon"])
        return [r for r in rows if r["updated_at"] is not None], next_horizon

    def check_user(self, customer_id: str, user: str) -> tuple[int, dict[str, Any]]:
        """What one user of the customer may use: their subscriptions, each capped by their role."""
        email = user.strip().lower()
        roles = self.roles.get(customer_id, {}).get(email, {})
        meta = {
            "customer_id": customer_id,
            "user": email,
            "stale": self.stale,
            "as_of": self.as_of.isoformat() if self.as_of else None,
        }
        if not roles:
            return 404, {**meta, "error": "this user has no role on the customer's subscriptions"}
        bodies = {sid: held.body for sid, held in self.subscription_sets.get(customer_id, {}).items()}
        versions = {sid: held.version for sid, held in self.subscription_sets.get(customer_id, {}).items()}
        body = user_body(self.catalog, customer_id, bodies, roles, datetime.now(UTC))
        return 200, {**meta, "versions": {sid: versions[sid] for sid in body["roles"]}, **body}

    async def run(self) -> None:
        """Refresh forever; while the database is down, keep serving what is held, flagged stale."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.stale:
                    log.warning(
                        "check API: database unreachable (%s); serving stale sets", type(exc).__name__
                    )
                self.stale = True
            await asyncio.sleep(self.poll_seconds)

    def check(self, customer_id: str, feature: str | None = None) -> tuple[int, dict[str, Any]]:
        """The answer of a check: the customer's set, or one feature of it."""
        held = self.sets.get(customer_id)
        meta = {
            "customer_id": customer_id,
            "stale": self.stale,
            "as_of": self.as_of.isoformat() if self.as_of else None,
        }
        if held is None:
            return 404, {**meta, "error": "no entitlements known for this customer"}
        meta |= {"version": held.version, "updated_at": held.updated_at.isoformat()}
        body = held.body
        if feature is None:
            return 200, {**meta, **body}
        numeric = feature in body["limits"]
        definition = self.catalog.feature(feature, numeric=numeric)
        limit = body["limits"].get(feature)
        enabled = feature in body["features"] or (limit is not None and limit > 0)
        return 200, {
            **meta,
            "feature": feature,
            "kind": definition.kind,
            "enabled": enabled,
            "limit": limit,
            "access": body["access"],
            "can_create_instances": body["can_create_instances"],
        }

    async def answer(self, path: str) -> tuple[int, object] | None:
        """HTTP GET ``/v1/customers/{id}/entitlements[/{feature}]`` and
        ``/v1/customers/{id}/users/{user}/entitlements``; None for any other path."""
        from urllib.parse import unquote

        user = _USER.match(path)
        if user is not None:
            return self.check_user(unquote(user.group(1)), unquote(user.group(2)))
        m = _CUSTOMER.match(path)
        if m is None:
            return None
        return self.check(unquote(m.group(1)), unquote(m.group(2)) if m.group(2) else None)
