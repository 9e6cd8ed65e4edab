"""What a subscription, and a customer across all its subscriptions, may use (pure).

A subscription's grant comes from its plan (per-seat limits times the quantity) and add-ons, each
limit combined by the catalog's merge rule (``sum`` or ``max``). The access policy turns the
subscription's status into a level (full, held, read-only, revoked) that decides what of the grant
is usable. Operator overrides add features or raise limits between two instants. The customer's
set merges every subscription's set: booleans OR, limits by their rule, instances add up, and the
strongest access wins, so one overdue subscription never takes what a prepaid one grants.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from services.entitlements.domain.policy import LEVELS, AccessPolicy, Level, access_at
from shared.catalog import Catalog


@dataclass(frozen=True)
class EntitlementSet:
    """Features, limits and instance allowance of one subscription (kept for existing callers)."""

    features: tuple[str, ...]
    limits: dict[str, int]
    instances: int
    can_create_instances: bool


@dataclass(frozen=True)
class PendingChange:
    """A change already decided that takes effect later (published in advance)."""

    kind: str  # access, plan_change, cancellation, override_start, override_end
    effective_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form (times as RFC 3339 text)."""
        return {"kind": self.kind, "effective_at": self.effective_at.isoformat(), **self.detail}


@dataclass(frozen=True)
class SubscriptionInputs:
    """What entitlements knows of one subscription: the latest lifecycle snapshot it applied."""

    subscription_id: str
    customer_id: str
    status: str
    channel: str
    plan_id: str
    quantity: int
    addons: tuple[tuple[str, int], ...]
    status_since: datetime
    grace_ends_at: datetime | None = None
    clock: str = "system"
    scheduled: tuple[PendingChange, ...] = ()  # lifecycle changes scheduled for a period end
    current_period_start: date | None = None  # counted limits of P1M features reset at renewal
    started_at: datetime | None = None  # grandfathered catalogs grant what was in force then

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form for storage."""
        return {
            "subscription_id": self.subscription_id,
            "customer_id": self.customer_id,
            "status": self.status,
            "channel": self.channel,
            "plan_id": self.plan_id,
            "quantity": self.quantity,
            "addons": [list(a) for a in self.addons],
            "status_since": self.status_since.isoformat(),
            "grace_ends_at": self.grace_ends_at.isoformat() if self.grace_ends_at else None,
            "clock": self.clock,
            "scheduled": [p.as_json() for p in self.scheduled],
            "current_period_start": self.current_period_start.isoformat()
            if self.current_period_start
            else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SubscriptionInputs:
        """Inverse of :meth:`as_json`."""
        return cls(
            subscription_id=raw["subscription_id"],
            customer_id=raw["customer_id"],
            status=raw["status"],
            channel=raw["channel"],
            plan_id=raw["plan_id"],
            quantity=int(raw["quantity"]),
            addons=tuple((str(a[0]), int(a[1])) for a in raw["addons"]),
            status_since=datetime.fromisoformat(raw["status_since"]),
            grace_ends_at=datetime.fromisoformat(raw["grace_ends_at"]) if raw.get("grace_ends_at") else None,
            clock=raw.get("clock") or "system",
            scheduled=tuple(
                PendingChange(
                    p["kind"],
                    datetime.fromisoformat(p["effective_at"]),
                    {k: v for k, v in p.items() if k not in ("kind", "effective_at")},
                )
                for p in raw.get("scheduled", [])
            ),
            current_period_start=(
                date.fromisoformat(raw["current_period_start"]) if raw.get("current_period_start") else None
            ),
            started_at=datetime.fromisoformat(raw["started_at"]) if raw.get("started_at") else None,
        )


@dataclass(frozen=True)
class Override:
    """An operator's grant: a feature (``value`` None) or a limit raised to ``value``, for a while."""

    override_id: str
    customer_id: str
    subscription_id: str | None
    feature: str
    value: int | None
    starts_at: datetime
    until: datetime | None
    reason: str
    actor: str

    def active_at(self, at: datetime) -> bool:
        """In force at ``at`` (from ``starts_at`` inclusive to ``until`` exclusive)."""
        return self.starts_at <= at and (self.until is None or at < self.until)


ENDED = frozenset({"cancelled", "expired", "terminated"})


def data_cleanup_due(inputs: SubscriptionInputs, at: datetime) -> bool:
    """An ended subscription whose grace period is over: its data may be deleted now."""
    return inputs.status in ENDED and inputs.grace_ends_at is not None and inputs.grace_ends_at <= at


def day_start(d: date) -> datetime:
    """Midnight UTC of a day: when a period-end change applies."""
    return datetime.combine(d, time(0), UTC)


def _merge_limit(catalog: Catalog, name: str, a: int, b: int) -> int:
    return max(a, b) if catalog.feature(name, numeric=True).merge == "max" else a + b


def granted(
    catalog: Catalog,
    *,
    plan_id: str,
    quantity: int,
    addons: Iterable[tuple[str, int]],
    on: date | None = None,
) -> tuple[set[str], dict[str, int], int]:
    """Features, limits and instances a plan with its add-ons grants (before the access policy).

    ``on``: the catalog's grant versions in force that day (grandfathering); None: the latest.
    """
    plan = catalog.plan(plan_id)
    plan_features, plan_limits, instances = plan.grants_on(on)
    limits = {n: v * quantity if n in plan.per_seat else v for n, v in plan_limits.items()}
    features = set(plan_features)
    for addon_id, addon_quantity in addons:
        addon = catalog.plan(addon_id)
        addon_features, addon_limits, addon_instances = addon.grants_on(on)
        features.update(addon_features)
        instances += addon_instances * addon_quantity
        for name, value in addon_limits.items():
            # Repeated add-ons stack: quantity N adds N times, whatever the merge rule across grants.
            extra = value * addon_quantity
            limits[name] = _merge_limit(catalog, name, limits[name], extra) if name in limits else extra
    return features, limits, instances


def entitlements_for(
    catalog: Catalog, *, plan_id: str, quantity: int, addons: list[tuple[str, int]], status: str
) -> EntitlementSet:
    """Entitlements of a subscription in ``status`` under the default policy's levels, without grace."""
    level: Level = (
        "full"
        if status in ("active", "trial", "past_due", "non_renewing")
        else "held"
        if status in ("suspended", "paused")
        else "revoked"
    )
    if level == "revoked":
        return EntitlementSet(features=(), limits={}, instances=0, can_create_instances=False)
    features, limits, instances = granted(catalog, plan_id=plan_id, quantity=quantity, addons=addons)
    return EntitlementSet(
        features=tuple(sorted(features)),
        limits=dict(sorted(limits.items())),
        instances=instances,
        can_create_instances=level == "full",
    )


def _apply_overrides(
    catalog: Catalog, features: set[str], limits: dict[str, int], overrides: Iterable[Override], at: datetime
) -> list[str]:
    """Add what the overrides in force grant (never lowers a limit); returns their ids."""
    used = []
    for o in sorted(overrides, key=lambda o: o.override_id):
        if not o.active_at(at):
            continue
        used.append(o.override_id)
        if o.value is None:
            features.add(o.feature)
        else:
            limits[o.feature] = max(limits.get(o.feature, 0), o.value)
    return used


def _body(
    level: Level,
    features: set[str],
    limits: dict[str, int],
    instances: int,
    overrides: list[str],
    pending: list[PendingChange],
) -> dict[str, Any]:
    usable = level != "revoked"
    return {
        "access": level,
        "features": sorted(features) if usable else [],
        "limits": dict(sorted(limits.items())) if usable else {},
        "instances": instances if usable else 0,
        "can_create_instances": level == "full",
        "writable": level in ("full", "held"),
        "overrides": overrides,
        "pending": [p.as_json() for p in sorted(pending, key=lambda p: (p.effective_at, p.kind))],
    }


def _override_boundaries(overrides: Iterable[Override], at: datetime) -> list[PendingChange]:
    out = []
    for o in overrides:
        if o.starts_at > at:
            out.append(PendingChange("override_start", o.starts_at, {"override_id": o.override_id}))
        if o.until is not None and o.until > at:
            out.append(PendingChange("override_end", o.until, {"override_id": o.override_id}))
    return out


def subscription_body(
    catalog: Catalog,
    policy: AccessPolicy,
    inputs: SubscriptionInputs,
    overrides: Iterable[Override],
    at: datetime,
) -> dict[str, Any]:
    """The subscription's set at ``at``: the grant, limited by its access level, plus its overrides."""
    mine = [o for o in overrides if o.subscription_id == inputs.subscription_id]
    access = access_at(
        policy,
        status=inputs.status,
        channel=inputs.channel,
        plan=inputs.plan_id,
        status_since=inputs.status_since,
        grace_ends_at=inputs.grace_ends_at,
        at=at,
    )
    grandfathered = catalog.renewal_pricing == "grandfathered" and inputs.started_at is not None
    features, limits, instances = granted(
        catalog,
        plan_id=inputs.plan_id,
        quantity=inputs.quantity,
        addons=inputs.addons,
        on=inputs.started_at.date() if grandfathered and inputs.started_at else at.date(),
    )
    pending = [p for p in inputs.scheduled if p.effective_at > at]
    if access.changes_at is not None and access.next_level is not None:
        pending.append(PendingChange("access", access.changes_at, {"access": access.next_level}))
    pending += _override_boundaries(mine, at)
    if inputs.status in ENDED and inputs.grace_ends_at is not None and inputs.grace_ends_at > at:
        pending.append(PendingChange("data_cleanup", inputs.grace_ends_at))
    if access.level == "revoked":
        features, limits, instances = set(), {}, 0
    used = _apply_overrides(catalog, features, limits, mine, at)
    level: Level = access.level
    if used and level == "revoked":
        level = "read_only"  # an explicit grant is usable even on an ended subscription
    return _body(level, features, limits, instances, used, pending)


def customer_body(
    catalog: Catalog,
    customer_id: str,
    subscription_bodies: Mapping[str, Mapping[str, Any]],
    overrides: Iterable[Override],
    at: datetime,
) -> dict[str, Any]:
    """The customer's set: booleans OR, limits by their rule, instances add up, strongest access wins.

    Customer-wide overrides (no subscription) apply here; subscription overrides are already in
    their subscription's body.
    """
    features: set[str] = set()
    limits: dict[str, int] = {}
    instances = 0
    level: Level = "revoked"
    can_create = False
    pending: list[PendingChange] = []
    for sub_id in sorted(subscription_bodies):
        b = subscription_bodies[sub_id]
        features.update(b["features"])
        for name, value in b["limits"].items():
            limits[name] = _merge_limit(catalog, name, limits[name], value) if name in limits else value
        instances += int(b["instances"])
        can_create = can_create or bool(b["can_create_instances"])
        if LEVELS.index(b["access"]) > LEVELS.index(level):
            level = b["access"]
        for p in b["pending"]:
            detail = {k: v for k, v in p.items() if k not in ("kind", "effective_at")}
            pending.append(
                PendingChange(
                    p["kind"],
                    datetime.fromisoformat(p["effective_at"]),
                    {**detail, "subscription_id": sub_id},
                )
            )
    wide = [o for o in overrides if o.customer_id == customer_id and o.subscription_id is None]
    pending += _override_boundaries(wide, at)
    used = _apply_overrides(catalog, features, limits, wide, at)
    if used and level == "revoked":
        level = "read_only"
    body = _body(level, features, limits, instances, used, pending)
    body["can_create_instances"] = can_create
    body["subscriptions"] = sorted(subscription_bodies)
    return body


def next_boundary(bodies: Iterable[Mapping[str, Any]]) -> datetime | None:
    """The earliest pending change among the bodies: when the customer must be recomputed."""
    times = [datetime.fromisoformat(p["effective_at"]) for b in bodies for p in b["pending"]]
    return min(times) if times else None


def as_of(history: Sequence[tuple[datetime, int, dict[str, Any]]], at: datetime) -> dict[str, Any] | None:
    """The set in force at ``at`` from a history of ``(effective_at, version, body)``; None before the first."""
    before = [h for h in history if h[0] <= at]
    if not before:
        return None
    return max(before, key=lambda h: (h[0], h[1]))[2]


def scheduled_after(previous: Sequence[PendingChange], events: Iterable[Any]) -> tuple[PendingChange, ...]:
    """The lifecycle's scheduled changes still ahead after ``events`` (lifecycle event models).

    A period-end plan change or cancellation is pending from its scheduling until it applies or is
    withdrawn; the lifecycle's own timer applies it, and the next lifecycle change brings it here.
    """
    kept = list(previous)
    for e in events:
        kind = getattr(e, "type", "")
        if kind == "PlanChangeScheduled":
            kept = [p for p in kept if p.kind != "plan_change"]
            detail = {"to_plan_id": e.to_plan_id, "to_quantity": e.to_quantity, "direction": e.direction}
            kept.append(PendingChange("plan_change", day_start(e.effective_on), detail))
        elif kind in ("ScheduledPlanChangeDropped", "PlanChanged"):
            kept = [p for p in kept if p.kind != "plan_change"]
        elif kind == "CancellationScheduled":
            kept = [p for p in kept if p.kind != "cancellation"]
            kept.append(PendingChange("cancellation", day_start(e.effective_on), {"to_status": "cancelled"}))
        elif kind in (
            "CancellationRevoked",
            "SubscriptionCancelled",
            "SubscriptionExpired",
            "SubscriptionTerminated",
        ):
            kept = [p for p in kept if p.kind != "cancellation"]
    return tuple(kept)


ROLES = ("owner", "admin", "editor", "reader")
# The most a role may do, whatever the subscription allows: editors change data but provision
# nothing new; readers only read.
ROLE_CAP: dict[str, Level] = {"owner": "full", "admin": "full", "editor": "held", "reader": "read_only"}


def capped(body: Mapping[str, Any], role: str) -> dict[str, Any]:
    """A subscription's set as a user with ``role`` may use it."""
    cap = ROLE_CAP[role]
    level: Level = min(body["access"], cap, key=LEVELS.index)
    out = dict(body)
    out["access"] = level
    out["can_create_instances"] = bool(body["can_create_instances"]) and level == "full"
    out["writable"] = bool(body["writable"]) and level in ("full", "held")
    return out


def user_body(
    catalog: Catalog,
    customer_id: str,
    subscription_bodies: Mapping[str, Mapping[str, Any]],
    roles: Mapping[str, str],
    at: datetime,
) -> dict[str, Any]:
    """What one user may use: the subscriptions they have a role in, each capped by that role, merged."""
    mine = {sid: capped(body, roles[sid]) for sid, body in subscription_bodies.items() if sid in roles}
    merged = customer_body(catalog, customer_id, mine, [], at)
    merged["roles"] = {sid: roles[sid] for sid in sorted(mine)}
    return merged
