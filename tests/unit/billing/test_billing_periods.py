"""The billing calendar: interval arithmetic with end-of-month clamping, anchored half-open periods."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.periods import (
    PeriodError,
    add_interval,
    days_between,
    days_in_month,
    month_end_boundaries,
    next_period_end,
    next_period_start,
    parse_interval,
    period_containing,
    period_index,
    period_length,
    periods_between,
)

DATES = st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31))
INTERVALS = st.sampled_from(["P1W", "P2W", "P1M", "P3M", "P1Y", "P6M", "P10D"])
MONTHLY = st.sampled_from(["P1M", "P3M", "P6M", "P1Y"])


def test_anchored_on_jan_31_clamps_and_returns_to_the_31st() -> None:
    """Anchor 2024-01-31 (leap year): Feb has 29 days -> Feb 29; Mar has 31 -> back to Mar 31, not Mar 29."""
    anchor = date(2024, 1, 31)
    assert [add_interval(anchor, "P1M", k) for k in range(0, 6)] == [
        date(2024, 1, 31),
        date(2024, 2, 29),
        date(2024, 3, 31),
        date(2024, 4, 30),
        date(2024, 5, 31),
        date(2024, 6, 30),
    ]
    # Common year: Feb 28.
    assert add_interval(date(2025, 1, 31), "P1M") == date(2025, 2, 28)
    assert add_interval(date(2025, 1, 31), "P1M", 2) == date(2025, 3, 31)


def test_chaining_would_drift_but_anchor_day_restores_it() -> None:
    """Feb 28 + 1 month is Mar 28 unless we say the anchor day is 31."""
    assert add_interval(date(2025, 2, 28), "P1M") == date(2025, 3, 28)
    assert add_interval(date(2025, 2, 28), "P1M", anchor_day=31) == date(2025, 3, 31)
    assert add_interval(date(2025, 2, 28), "P1M", anchor_day=30) == date(2025, 3, 30)


def test_yearly_on_feb_29() -> None:
    """A yearly plan anchored on a leap day renews Feb 28 in common years and Feb 29 in leap years."""
    anchor = date(2024, 2, 29)
    assert [add_interval(anchor, "P1Y", k) for k in range(5)] == [
        date(2024, 2, 29),
        date(2025, 2, 28),
        date(2026, 2, 28),
        date(2027, 2, 28),
        date(2028, 2, 29),
    ]


def test_weeks_and_negative_offsets() -> None:
    assert add_interval(date(2024, 1, 1), "P1W") == date(2024, 1, 8)
    assert add_interval(date(2024, 1, 1), "P2W", 2) == date(2024, 1, 29)
    assert add_interval(date(2024, 3, 31), "P1M", -1) == date(2024, 2, 29)
    assert add_interval(date(2024, 1, 15), "P3M", -1) == date(2023, 10, 15)


@pytest.mark.parametrize("bad", ["1M", "P0M", "PT1H", "P1.5M", "monthly", ""])
def test_bad_intervals_are_refused(bad: str) -> None:
    with pytest.raises(PeriodError):
        parse_interval(bad)


def test_parse_interval() -> None:
    assert parse_interval("P1Y") == ("M", 12)
    assert parse_interval("P3M") == ("M", 3)
    assert parse_interval("p2w") == ("W", 2)


def test_first_partial_period_is_the_full_period_ending_on_the_anchor() -> None:
    """Kill Bill: anchor day 25, start Sep 16 -> the period [Aug 25, Sep 25) of 31 days contains it."""
    start, end = period_containing(date(2024, 9, 16), billing_anchor=date(2024, 9, 25), interval="P1M")
    assert (start, end) == (date(2024, 8, 25), date(2024, 9, 25))
    assert days_between(start, end) == 31


def test_periods_are_half_open() -> None:
    anchor = date(2024, 1, 31)
    assert period_containing(date(2024, 2, 29), billing_anchor=anchor, interval="P1M") == (
        date(2024, 2, 29),
        date(2024, 3, 31),
    )
    assert period_containing(date(2024, 2, 28), billing_anchor=anchor, interval="P1M") == (
        date(2024, 1, 31),
        date(2024, 2, 29),
    )
    assert next_period_end(date(2024, 1, 31), billing_anchor=anchor, interval="P1M") == date(2024, 2, 29)
    assert next_period_start(date(2024, 1, 31), billing_anchor=anchor, interval="P1M") == date(2024, 1, 31)
    assert next_period_start(date(2024, 2, 1), billing_anchor=anchor, interval="P1M") == date(2024, 2, 29)


def test_stored_clamped_anchor_with_anchor_day() -> None:
    """A subscription whose stored anchor is Feb 28 but whose anchor day is 31."""
    p = period_containing(date(2025, 3, 15), billing_anchor=date(2025, 2, 28), interval="P1M", anchor_day=31)
    assert p == (date(2025, 2, 28), date(2025, 3, 31))
    with pytest.raises(PeriodError):
        period_containing(date(2025, 3, 15), billing_anchor=date(2025, 3, 15), interval="P1M", anchor_day=31)


def test_period_length_and_month_boundaries() -> None:
    assert period_length(date(2024, 1, 1), date(2025, 1, 1)) == 366
    assert period_length(date(2025, 1, 1), date(2026, 1, 1)) == 365
    with pytest.raises(PeriodError):
        period_length(date(2024, 1, 2), date(2024, 1, 2))
    assert month_end_boundaries(date(2024, 1, 15), date(2024, 3, 1)) == [date(2024, 2, 1)]
    assert month_end_boundaries(date(2024, 1, 15), date(2024, 3, 2)) == [date(2024, 2, 1), date(2024, 3, 1)]
    assert month_end_boundaries(date(2024, 1, 1), date(2024, 1, 31)) == []


@given(anchor=DATES, interval=MONTHLY, k=st.integers(-60, 60))
def test_add_interval_clamps_and_keeps_the_anchor_day(anchor: date, interval: str, k: int) -> None:
    """Boundary k is the anchor day, or the month's last day when the month is too short; never drifts."""
    d = add_interval(anchor, interval, k)
    assert d.day == min(anchor.day, days_in_month(d.year, d.month))
    _, months = parse_interval(interval)
    assert (d.year * 12 + d.month) - (anchor.year * 12 + anchor.month) == months * k
    # Computed from the anchor, never by chaining: going k then back k returns to the anchor.
    assert add_interval(d, interval, -k, anchor_day=anchor.day) == anchor


@given(anchor=DATES, interval=INTERVALS, k=st.integers(-60, 60))
def test_boundaries_strictly_increase(anchor: date, interval: str, k: int) -> None:
    assert add_interval(anchor, interval, k) < add_interval(anchor, interval, k + 1)


@given(anchor=DATES, interval=MONTHLY, k=st.integers(-60, 60))
def test_monthly_period_lengths_are_real_lengths(anchor: date, interval: str, k: int) -> None:
    """A month is 28-31 days, a quarter 89-92, a year 365/366."""
    length = days_between(add_interval(anchor, interval, k), add_interval(anchor, interval, k + 1))
    lo, hi = {"P1M": (28, 31), "P3M": (89, 92), "P6M": (181, 184), "P1Y": (365, 366)}[interval]
    assert lo <= length <= hi


@given(day=DATES, anchor=DATES, interval=INTERVALS)
def test_period_containing_contains_the_day(day: date, anchor: date, interval: str) -> None:
    start, end = period_containing(day, billing_anchor=anchor, interval=interval)
    assert start <= day < end
    k = period_index(day, billing_anchor=anchor, interval=interval)
    assert (start, end) == (add_interval(anchor, interval, k), add_interval(anchor, interval, k + 1))
    assert next_period_end(day, billing_anchor=anchor, interval=interval) == end


@given(a=DATES, span=st.integers(0, 800), anchor=DATES, interval=INTERVALS)
def test_periods_between_tile_the_window(a: date, span: int, anchor: date, interval: str) -> None:
    """The pieces are contiguous, cover the window exactly and each lies inside one period."""
    b = a + timedelta(days=span)
    pieces = list(periods_between(a, b, billing_anchor=anchor, interval=interval))
    assert sum(days_between(s, e) for s, e in pieces) == span
    if pieces:
        assert pieces[0][0] == a and pieces[-1][1] == b
    for (_, e1), (s2, _) in pairwise(pieces):
        assert e1 == s2
    for s, e in pieces:
        p_start, p_end = period_containing(s, billing_anchor=anchor, interval=interval)
        assert p_start <= s < e <= p_end


@given(a=DATES, b=DATES)
def test_days_between_is_antisymmetric(a: date, b: date) -> None:
    assert days_between(a, b) == -days_between(b, a) == (b - a).days
