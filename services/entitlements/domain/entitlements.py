"""What a subscription may use, from its plan, add-ons, quantity and status (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.catalog import Catalog

# Statuses with full use of the plan.
_FULL = frozenset({"active", "trial", "past_due", "non_renewing"})
# Suspended (billing issues): existing instances stay, no new ones. Paused: held the same way.
_HELD = frozenset({"suspended", "paused"})


@dataclass(frozen=True)
class EntitlementSet:
    """Features, limits and instance allowance of one subscription."""

    features: tuple[str, ...]
    limits: dict[str, int]
    instances: int
    can_create_instances: bool


def entitlements_for(
    catalog: Catalog, *, plan_id: str, quantity: int, addons: list[tuple[str, int]], status: str
) -> EntitlementSet:
    """Entitlements of a subscription in ``status``; ended or unapproved ones get nothing.

    Limits of add-ons add to the plan's (``extra-storage`` x 2 adds 200 GB); the plan's
    per-seat limits do not scale with quantity, instances do not either.
    """
    if status not in _FULL and status not in _HELD:
        return EntitlementSet(features=(), limits={}, instances=0, can_create_instances=False)
    plan = catalog.plan(plan_id)
    limits = dict(plan.limits)
    features = set(plan.features)
    instances = plan.instances
    for addon_id, addon_quantity in addons:
        addon = catalog.plan(addon_id)
        features.update(addon.features)
        instances += addon.instances * addon_quantity
        for name, value in addon.limits.items():
            limits[name] = limits.get(name, 0) + value * addon_quantity
    return EntitlementSet(
        features=tuple(sorted(features)),
        limits=dict(sorted(limits.items())),
        instances=instances,
        can_create_instances=status in _FULL,
    )
