"""Drift between stored sets and what the current catalog, policy and overrides give (no writes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.entitlements import views
from services.entitlements.domain.entitlements import customer_body, subscription_body
from services.entitlements.domain.policy import AccessPolicy
from shared.catalog import Catalog
from shared.timekeeping import SYSTEM_CLOCK, clock_now


@dataclass(frozen=True)
class Drift:
    """One set whose stored body differs from the recomputed one."""

    customer_id: str
    subscription_id: str | None  # None: the merged customer set
    stored_version: int
    stored: dict[str, Any]
    recomputed: dict[str, Any]

    def changed_keys(self) -> list[str]:
        """The top-level fields that differ."""
        keys = set(self.stored) | set(self.recomputed)
        return sorted(k for k in keys if self.stored.get(k) != self.recomputed.get(k))


async def drift_of(
    pool: asyncpg.Pool, catalog: Catalog, policy: AccessPolicy, customer_id: str
) -> tuple[datetime, list[Drift]]:
    """Recompute the customer's sets at its business time; return that time and every drift."""
    inputs = await views.inputs_of(pool, customer_id)
    test_clocks = sorted({i.clock for i in inputs} - {SYSTEM_CLOCK})
    at = await clock_now(pool, test_clocks[0] if test_clocks else SYSTEM_CLOCK)
    granted = await views.overrides(pool, customer_id)
    stored = {r["subscription_id"]: r for r in await views.subscription_sets(pool, customer_id)}
    drifts: list[Drift] = []
    bodies: dict[str, dict[str, Any]] = {}
    for i in inputs:
        body = {
            "customer_id": customer_id,
            "status": i.status,
            "plan_id": i.plan_id,
            **subscription_body(catalog, policy, i, granted, at),
        }
        bodies[i.subscription_id] = body
        row = stored[i.subscription_id]
        if dict(row["body"]) != body:
            drifts.append(Drift(customer_id, i.subscription_id, row["version"], dict(row["body"]), body))
    merged = customer_body(catalog, customer_id, bodies, granted, at)
    current = await views.customer_set(pool, customer_id)
    if current is None or dict(current["body"]) != merged:
        stored_body = dict(current["body"]) if current else {}
        drifts.append(Drift(customer_id, None, current["version"] if current else 0, stored_body, merged))
    return at, drifts
