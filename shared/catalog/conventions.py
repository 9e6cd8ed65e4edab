"""Billing conventions a catalog (or one plan) selects: proration, billing mode, cycle alignment.

Pure data and pure day counting; no I/O. The billing engine reads these through
:meth:`shared.catalog.Catalog.proration_for` and friends. Every convention is documented
with the system that uses it in ``docs/billing.md``.

Day counts (the numerator and denominator of a proration fraction):

* ``actual`` (default): actual days; the denominator is the actual length of the billing
  period (28-31 for a month, 365/366 for a year).
* ``fixed_30``: every month counts 30 days (Kill Bill ``org.killbill.invoice.proration.fixed.days=30``):
  the denominator of a month-based period is 30 x its months, the numerator actual days,
  capped at the denominator.
* ``30_360``: 30/360 (US): both numerator and denominator count 30 days per month
  (day 31 counts as day 30), 360 per year (Zuora's 30/360 option).
* ``actual_360``: actual days over a 360-day year (Zuora's Actual/360): numerator actual
  days, denominator 30 x the months of the period, capped like ``fixed_30``.

Weekly and daily intervals always count actual days (no convention defines months there).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict

DayCount = Literal["actual", "fixed_30", "30_360", "actual_360"]
Rounding = Literal["half_up", "half_even"]
ChargeMode = Literal["in_advance", "in_arrears"]
Alignment = Literal["subscription", "account", "calendar"]


class ProrationConvention(BaseModel):
    """How a partial period is priced: day count, the change day, rounding to the minor unit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day_count: DayCount = "actual"
    change_day_used: bool = False
    """True: the change or termination day counts as used by the old terms (Lago); the
    credit for unused time starts the next day. False (default): half-open periods, the
    change day belongs to the new terms and is credited on the old ones."""
    rounding: Rounding = "half_up"


class ProrationOverride(BaseModel):
    """A plan's partial override of the catalog's proration convention."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day_count: DayCount | None = None
    change_day_used: bool | None = None
    rounding: Rounding | None = None

    def over(self, base: ProrationConvention) -> ProrationConvention:
        """``base`` with the fields this override sets."""
        return base.model_copy(update={k: v for k, v in self.model_dump().items() if v is not None})


def _months(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + (end.month - start.month)


def _month_based(start: date, end: date) -> int:
    # Months spanned by a month-based period, 0 for a weekly or daily one (too short for its months).
    months = _months(start, end)
    days = (end - start).days
    return months if months >= 1 and days >= 28 * months else 0


def days_30_360(start: date, end: date) -> int:
    """30/360 (US) day count from ``start`` (inclusive) to ``end`` (exclusive)."""
    d1 = min(start.day, 30)
    d2 = end.day
    if d2 == 31 and d1 == 30:
        d2 = 30
    return 360 * (end.year - start.year) + 30 * (end.month - start.month) + (d2 - d1)


def period_measure(convention: DayCount, period_start: date, period_end: date) -> int:
    """The denominator: the length of the billing period ``[period_start, period_end)`` in the convention."""
    actual = (period_end - period_start).days
    months = _month_based(period_start, period_end)
    if convention == "actual" or months == 0:
        return actual
    # A whole month-based period is 30 days per month in every 30-day convention.
    return 30 * months


def span_measure(convention: DayCount, start: date, end: date, period_start: date, period_end: date) -> int:
    """The numerator: ``[start, end)`` of the period ``[period_start, period_end)``, in the convention.

    Never more than :func:`period_measure` and never negative; the whole period measures
    exactly the denominator.
    """
    denominator = period_measure(convention, period_start, period_end)
    if start <= period_start and end >= period_end:
        return denominator
    start, end = max(start, period_start), min(end, period_end)
    if end <= start:
        return 0
    if convention == "30_360" and _month_based(period_start, period_end):
        value = days_30_360(start, end)
    else:
        value = (end - start).days
    return max(0, min(value, denominator))


def aligned_first_period(
    alignment: Alignment,
    start: date,
    interval: str,
    *,
    account_cycle_day: int | None = None,
    anchor: date | None = None,
) -> tuple[date, int | None, date, date]:
    """The first period of an item set by the alignment policy of its billing interval.

    ``subscription``: the subscription's own date (or its explicit ``anchor``);
    ``account``: the account's billing cycle day (the start's day when the account has none);
    ``calendar``: the 1st of the month, quarter or year. Returns
    ``(billing_anchor, anchor_day, period_start, period_end)`` (see :func:`shared.periods.first_period`).
    """
    from shared.periods import first_period

    if alignment == "calendar":
        return first_period(start, interval, calendar=True)
    if alignment == "account" and account_cycle_day is not None:
        return first_period(start, interval, cycle_day=account_cycle_day)
    return first_period(start, interval, anchor=anchor)
