"""The billing calendar: billing intervals, anchored periods and day counts. Pure, no clock reads.

Intervals are ISO 8601 durations of whole weeks, months or years: ``P1W``, ``P2W``,
``P1M``, ``P3M``, ``P1Y`` (``PnD`` is accepted too, for tests and odd contracts).

Periods are half-open ``[start, end)``: the start day is served by the period, the
end day is the first day of the next one. A change "on day X" therefore belongs to
the period that contains X, and counting days is simply ``(end - start).days``.

End-of-month clamping
---------------------
Month and year arithmetic keeps a *billing anchor day* (1..31). When a month is too
short for that day the date is clamped to the month's last day, and the following
month returns to the anchor day. A subscription anchored on the 31st renews on::

    Jan 31, Feb 28 (Feb 29 in a leap year), Mar 31, Apr 30, May 31, ...

Every boundary is computed from the anchor (``anchor + k months``), never by chaining
clamped dates: chaining would drift (Jan 31 -> Feb 28 -> Mar 28 -> Apr 28 ...) and a
customer anchored on the 31st would be billed on the 28th forever.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Literal

IntervalUnit = Literal["D", "W", "M"]

_INTERVAL_RE = re.compile(r"^P(\d+)([DWMY])$")


class PeriodError(ValueError):
    """An interval string or anchor that the billing calendar cannot use."""


def parse_interval(interval: str) -> tuple[IntervalUnit, int]:
    """Split an ISO 8601 interval into a unit and a count: ``P3M`` -> ``("M", 3)``, ``P1Y`` -> ``("M", 12)``.

    Years are expressed as twelve months so that the same clamping rule applies
    (a yearly subscription anchored on Feb 29 renews on Feb 28 in common years).
    """
    m = _INTERVAL_RE.match(interval.strip().upper())
    if not m:
        raise PeriodError(f"unsupported billing interval {interval!r} (expected PnD, PnW, PnM or PnY)")
    count = int(m.group(1))
    if count <= 0:
        raise PeriodError(f"billing interval must be positive: {interval!r}")
    unit = m.group(2)
    if unit == "Y":
        return "M", count * 12
    if unit == "M":
        return "M", count
    if unit == "W":
        return "W", count
    return "D", count


def days_in_month(year: int, month: int) -> int:
    """Number of days in ``month`` of ``year`` (28..31)."""
    return calendar.monthrange(year, month)[1]


def _add_months(start: date, months: int, day: int) -> date:
    # Absolute month index so negative offsets work the same as positive ones.
    index = start.year * 12 + (start.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    return date(year, month, min(day, days_in_month(year, month)))


def add_interval(anchor: date, interval: str, n: int = 1, *, anchor_day: int | None = None) -> date:
    """The date ``n`` intervals after ``anchor`` (``n`` may be zero or negative).

    For month-based intervals the day of month is ``anchor_day`` (default: ``anchor.day``)
    clamped to the last day of the target month. Pass ``anchor_day`` when ``anchor`` is
    itself a clamped date: ``add_interval(date(2025, 2, 28), "P1M", anchor_day=31)`` is
    Mar 31, not Mar 28. Always compute ``add_interval(billing_anchor, interval, k)``
    rather than chaining ``add_interval`` on its own results.
    """
    unit, count = parse_interval(interval)
    if unit == "D":
        return anchor + timedelta(days=count * n)
    if unit == "W":
        return anchor + timedelta(weeks=count * n)
    day = anchor.day if anchor_day is None else anchor_day
    if not 1 <= day <= 31:
        raise PeriodError(f"anchor_day must be 1..31, got {day}")
    return _add_months(anchor, count * n, day)


def _check_anchor_day(billing_anchor: date, anchor_day: int | None) -> None:
    # A stored anchor may be a clamped date (Feb 28 for a customer anchored on the 31st);
    # it must then be the last day of its month and anchor_day must be later than it.
    if anchor_day is None or anchor_day == billing_anchor.day:
        return
    last = days_in_month(billing_anchor.year, billing_anchor.month)
    if not (billing_anchor.day == last and anchor_day > last and anchor_day <= 31):
        raise PeriodError(f"billing_anchor {billing_anchor} is not anchor day {anchor_day} (clamped)")


def period_index(day: date, *, billing_anchor: date, interval: str, anchor_day: int | None = None) -> int:
    """The integer ``k`` such that ``day`` lies in ``[anchor + k intervals, anchor + (k+1) intervals)``.

    ``k`` is negative for days before the anchor (a first partial period).
    """
    _check_anchor_day(billing_anchor, anchor_day)
    unit, count = parse_interval(interval)
    if unit in ("D", "W"):
        length = count if unit == "D" else 7 * count
        return (day - billing_anchor).days // length
    months = (day.year - billing_anchor.year) * 12 + (day.month - billing_anchor.month)
    k = months // count
    # The estimate is off by at most one in either direction because of the day of month.
    while add_interval(billing_anchor, interval, k, anchor_day=anchor_day) > day:
        k -= 1
    while add_interval(billing_anchor, interval, k + 1, anchor_day=anchor_day) <= day:
        k += 1
    return k


def period_containing(
    day: date, *, billing_anchor: date, interval: str, anchor_day: int | None = None
) -> tuple[date, date]:
    """The billing period ``[start, end)`` that contains ``day``.

    Boundaries are ``billing_anchor + k * interval`` for every integer ``k`` (with
    end-of-month clamping to ``anchor_day``, default ``billing_anchor.day``). A day
    before the anchor falls in the full period that ends on the anchor (or an earlier
    boundary): that is the period whose length is the denominator of a first partial
    period's proration.
    """
    k = period_index(day, billing_anchor=billing_anchor, interval=interval, anchor_day=anchor_day)
    return (
        add_interval(billing_anchor, interval, k, anchor_day=anchor_day),
        add_interval(billing_anchor, interval, k + 1, anchor_day=anchor_day),
    )


def next_period_end(day: date, *, billing_anchor: date, interval: str, anchor_day: int | None = None) -> date:
    """End (exclusive) of the period containing ``day``: the next renewal date strictly after ``day``."""
    return period_containing(day, billing_anchor=billing_anchor, interval=interval, anchor_day=anchor_day)[1]


def next_period_start(
    day: date, *, billing_anchor: date, interval: str, anchor_day: int | None = None
) -> date:
    """The first period boundary on or after ``day`` (``day`` itself if it is a boundary)."""
    start, end = period_containing(
        day, billing_anchor=billing_anchor, interval=interval, anchor_day=anchor_day
    )
    return start if start == day else end


def periods_between(
    start: date, end: date, *, billing_anchor: date, interval: str, anchor_day: int | None = None
) -> Iterator[tuple[date, date]]:
    """The billing periods that overlap ``[start, end)``, each cut to that window, in order."""
    if end <= start:
        return
    k = period_index(start, billing_anchor=billing_anchor, interval=interval, anchor_day=anchor_day)
    while True:
        p_start = add_interval(billing_anchor, interval, k, anchor_day=anchor_day)
        p_end = add_interval(billing_anchor, interval, k + 1, anchor_day=anchor_day)
        if p_start >= end:
            return
        yield max(p_start, start), min(p_end, end)
        k += 1


def days_between(a: date, b: date) -> int:
    """Whole days from ``a`` (inclusive) to ``b`` (exclusive); negative if ``b`` is before ``a``."""
    return (b - a).days


def period_length(start: date, end: date) -> int:
    """Length in days of the half-open period ``[start, end)``; raises if it is empty or reversed."""
    days = days_between(start, end)
    if days <= 0:
        raise PeriodError(f"empty or reversed period [{start}, {end})")
    return days


def month_end_boundaries(start: date, end: date) -> list[date]:
    """First-of-month dates strictly inside ``(start, end)``: where ``[start, end)`` crosses a month end.

    Used to split a service period into calendar-month pieces for revenue recognition.
    """
    out: list[date] = []
    cursor = date(start.year, start.month, 1)
    while True:
        cursor = _add_months(cursor, 1, 1)
        if cursor >= end:
            return out
        out.append(cursor)


CALENDAR_MONTHS = {1: 1, 3: 3, 6: 6, 12: 12}


def calendar_start(day: date, interval: str) -> date:
    """The calendar boundary on or before ``day`` for ``interval``.

    Months: the 1st of the month; quarters (``P3M``): the 1st of Jan/Apr/Jul/Oct; half
    years: Jan/Jul 1st; years: Jan 1st; weeks: the Monday. Daily intervals are their own days.
    """
    unit, count = parse_interval(interval)
    if unit == "D":
        return day
    if unit == "W":
        return day - timedelta(days=day.weekday())
    months = CALENDAR_MONTHS.get(count, count)
    index = (day.month - 1) // months * months if 12 % months == 0 else day.month - 1
    return date(day.year, index + 1, 1)


def first_period(
    start: date,
    interval: str,
    *,
    cycle_day: int | None = None,
    calendar: bool = False,
    anchor: date | None = None,
) -> tuple[date, int | None, date, date]:
    """Billing anchor, anchor day and the first period ``[start, end)`` of a subscription starting ``start``.

    * default (anniversary): the start is the anchor; the first period is a full one;
    * ``anchor``: an explicit billing cycle anchor (Stripe's ``billing_cycle_anchor``);
    * ``cycle_day``: the account's billing cycle day (Kill Bill's BCD), 1..31, clamped
      to month ends;
    * ``calendar``: periods start on the 1st of the month, quarter or year (Lago's calendar billing).

    Off the anchor, the first period is a leading stub from ``start`` to the next boundary;
    the returned anchor is the boundary on or before ``start``, so the stub is prorated
    against the full period it belongs to and the anchor never lies after the start.
    """
    anchor_day: int | None = None
    if calendar:
        boundary = calendar_start(start, interval)
    elif cycle_day is not None:
        if not 1 <= cycle_day <= 31:
            raise PeriodError(f"billing day must be 1..31, got {cycle_day}")
        unit, _ = parse_interval(interval)
        if unit != "M":
            raise PeriodError(f"a billing day needs a month-based interval, not {interval}")
        clamped = date(start.year, start.month, min(cycle_day, days_in_month(start.year, start.month)))
        boundary = clamped if clamped <= start else _add_months(clamped, -1, cycle_day)
        anchor_day = cycle_day if cycle_day != boundary.day else None
    elif anchor is not None:
        anchor_day = anchor.day
        boundary = add_interval(
            anchor,
            interval,
            period_index(start, billing_anchor=anchor, interval=interval),
            anchor_day=anchor_day,
        )
        if anchor_day == boundary.day:
            anchor_day = None
    else:
        return start, None, start, add_interval(start, interval)
    end = next_period_end(start, billing_anchor=boundary, interval=interval, anchor_day=anchor_day)
    return boundary, anchor_day, start, end
