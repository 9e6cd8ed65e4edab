"""Counted limits (pure): which period a usage report counts in, and which thresholds it crosses."""

from __future__ import annotations

from datetime import UTC, date, datetime

THRESHOLDS = (80, 100)  # per cent of the period's limit; each raises one event per period


def period_start(period: str | None, occurred_at: datetime, billing_period_start: date | None) -> date:
    """First day of the counting period of a metered feature.

    ``P1D``: the UTC day. ``P1M``: the subscription's current billing period (it resets at renewal),
    or the calendar month when none is known.
    """
    day = occurred_at.astimezone(UTC).date()
    if period == "P1D":
        return day
    if billing_period_start is not None and billing_period_start <= day:
        return billing_period_start
    return day.replace(day=1)


def crossed(used: int, limit: int, already: frozenset[int]) -> list[int]:
    """Thresholds ``used`` has reached against ``limit`` that were not raised before in this period.

    Integer arithmetic (``used * 100 >= limit * pct``): no rounding decides a threshold. A threshold
    reached only because the limit went down is raised then, still once per period.
    """
    if used <= 0:
        return []
    return [t for t in THRESHOLDS if t not in already and used * 100 >= limit * t]
