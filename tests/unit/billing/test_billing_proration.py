"""Proration by whole days: fraction, per-line half-up rounding, exact splits."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.billing.domain.proration import (
    ProrationFraction,
    prorate,
    remaining_fraction,
    split_by_days,
    split_period,
    unused_credit,
    used_amount,
)
from shared.money import allocate, from_minor, minor_units
from shared.periods import add_interval, days_between, period_containing

CURRENCIES = st.sampled_from(["USD", "EUR", "JPY", "BHD", "KWD", "GBP"])
DATES = st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 12, 31))
INTERVALS = st.sampled_from(["P1W", "P1M", "P3M", "P1Y"])


@st.composite
def amounts(draw: st.DrawFn, currency: str, max_minor: int = 10**9) -> Decimal:
    return from_minor(draw(st.integers(0, max_minor)), currency)


@st.composite
def charged_periods(draw: st.DrawFn) -> tuple[str, Decimal, date, date, date]:
    """(currency, amount, period start, period end, a day inside or around the period)."""
    currency = draw(CURRENCIES)
    amount = draw(amounts(currency))
    anchor = draw(DATES)
    interval = draw(INTERVALS)
    start, end = anchor, add_interval(anchor, interval)
    change = start + timedelta(days=draw(st.integers(-3, days_between(start, end) + 3)))
    return currency, amount, start, end, change


def test_kill_bill_example_leading_stub() -> None:
    """Kill Bill docs: 24.95/month, anchor day 25, start Sep 16.

    Period containing Sep 16 is [Aug 25, Sep 25) = 31 days; Sep 16 (incl.) to Sep 25 (excl.) = 9 days.
    9/31 x 24.95 = 7.2435... -> 7.24 (half-up to cents).
    """
    start, end = period_containing(date(2024, 9, 16), billing_anchor=date(2024, 9, 25), interval="P1M")
    fraction = remaining_fraction(date(2024, 9, 16), start, end)
    assert str(fraction) == "9/31"
    assert prorate(Decimal("24.95"), fraction, "USD") == Decimal("7.24")


def test_kill_bill_second_example() -> None:
    """Kill Bill docs: anchor day 17, start Sep 25 -> period [Sep 17, Oct 17) = 30 days, 22 left.

    22/30 x 24.95 = 18.2966... -> 18.30.
    """
    start, end = period_containing(date(2024, 9, 25), billing_anchor=date(2024, 10, 17), interval="P1M")
    assert (start, end) == (date(2024, 9, 17), date(2024, 10, 17))
    fraction = remaining_fraction(date(2024, 9, 25), start, end)
    assert prorate(Decimal("24.95"), fraction, "USD") == Decimal("18.30")


def test_half_up_per_line() -> None:
    """1.00 x 1/8 = 0.125 -> 0.13 (half-up, not banker's 0.12); negative: -0.125 -> -0.13."""
    assert prorate(Decimal("1.00"), ProrationFraction(1, 8), "USD") == Decimal("0.13")
    assert prorate(Decimal("-1.00"), ProrationFraction(1, 8), "USD") == Decimal("-0.13")


def test_jpy_has_no_minor_unit() -> None:
    """JPY 2900/month, 10 of 31 days: 2900 x 10/31 = 935.48... -> 935 yen."""
    assert prorate(Decimal("2900"), ProrationFraction(10, 31), "JPY") == Decimal("935")


def test_bhd_has_three_digits() -> None:
    """BHD 18.500/month, 10 of 31 days: 18.500 x 10/31 = 5.96774... -> 5.968 BHD."""
    assert prorate(Decimal("18.500"), ProrationFraction(10, 31), "BHD") == Decimal("5.968")


def test_leap_year_denominator() -> None:
    """Yearly 490.00 from 2024-01-01: 366 days; 100 left -> 490 x 100/366 = 133.879... -> 133.88.

    A 365-day denominator would give 134.25: the leap day matters.
    """
    start, end = date(2024, 1, 1), add_interval(date(2024, 1, 1), "P1Y")
    fraction = remaining_fraction(end - timedelta(days=100), start, end)
    assert fraction == ProrationFraction(100, 366)
    assert prorate(Decimal("490.00"), fraction, "USD") == Decimal("133.88")


def test_remaining_fraction_edges() -> None:
    s, e = date(2024, 2, 1), date(2024, 3, 1)
    assert remaining_fraction(s, s, e) == ProrationFraction(29, 29)
    assert remaining_fraction(date(2024, 1, 1), s, e) == ProrationFraction(29, 29)
    assert remaining_fraction(e, s, e) == ProrationFraction(0, 29)
    assert remaining_fraction(date(2024, 2, 29), s, e) == ProrationFraction(1, 29)
    with pytest.raises(ValueError):
        ProrationFraction(30, 29)


def test_credit_is_capped_by_what_was_already_credited() -> None:
    """A 31.00 line over 31 days: credit from day 21 = 10/31 -> 10.00; a later credit of the same days is 0.

    Crediting again from day 11 adds only days 11-20: 20.00 total - 10.00 already = 10.00.
    """
    s, e = date(2024, 1, 1), date(2024, 2, 1)
    first = unused_credit(Decimal("31.00"), s, e, date(2024, 1, 22), "USD")
    assert first == Decimal("10.00")
    assert unused_credit(Decimal("31.00"), s, e, date(2024, 1, 25), "USD", already_credited=first) == 0
    assert unused_credit(Decimal("31.00"), s, e, date(2024, 1, 12), "USD", already_credited=first) == Decimal(
        "10.00"
    )
    assert unused_credit(Decimal("31.00"), s, e, s, "USD", already_credited=Decimal("31.00")) == 0


@given(data=charged_periods())
def test_credit_for_unused_plus_used_equals_the_amount_charged(
    data: tuple[str, Decimal, date, date, date],
) -> None:
    currency, amount, start, end, change = data
    credit = unused_credit(amount, start, end, change, currency)
    assert 0 <= credit <= amount
    assert credit + used_amount(amount, start, end, change, currency) == amount
    if change <= start:
        assert credit == amount
    if change >= end:
        assert credit == 0


@given(data=charged_periods(), later=st.integers(0, 400))
def test_repeated_credits_never_exceed_the_charge(
    data: tuple[str, Decimal, date, date, date], later: int
) -> None:
    currency, amount, start, end, change = data
    first = unused_credit(amount, start, end, change + timedelta(days=later), currency)
    second = unused_credit(amount, start, end, change, currency, already_credited=first)
    assert first + second <= amount
    assert first + second == unused_credit(
        amount, start, end, min(change, change + timedelta(days=later)), currency
    )


@given(currency=CURRENCIES, data=st.data())
def test_prorate_is_within_half_a_minor_unit_of_the_exact_share(currency: str, data: st.DataObject) -> None:
    amount = data.draw(amounts(currency))
    period = data.draw(st.integers(1, 366))
    days = data.draw(st.integers(0, period))
    result = prorate(amount, ProrationFraction(days, period), currency)
    exact = amount * days / period
    assert abs(result - exact) <= Decimal(1).scaleb(-minor_units(currency)) / 2
    assert result == result.quantize(Decimal(1).scaleb(-minor_units(currency)))


@given(data=charged_periods(), cut_offsets=st.lists(st.integers(0, 400), max_size=8))
def test_pieces_of_a_period_split_at_any_days_sum_to_the_full_price(
    data: tuple[str, Decimal, date, date, date], cut_offsets: list[int]
) -> None:
    currency, amount, start, end, _ = data
    cuts = [start + timedelta(days=o) for o in cut_offsets]
    pieces = split_period(amount, start, end, cuts, currency)
    assert sum(p for _, _, p in pieces) == amount
    assert pieces[0][0] == start and pieces[-1][1] == end
    assert sum(days_between(a, b) for a, b, _ in pieces) == days_between(start, end)
    q = Decimal(1).scaleb(-minor_units(currency))
    for a, b, p in pieces:
        assert p >= 0
        assert abs(p - amount * days_between(a, b) / days_between(start, end)) < q


@given(currency=CURRENCIES, data=st.data())
def test_split_by_days_sums_back_even_for_negative_amounts(currency: str, data: st.DataObject) -> None:
    amount = -data.draw(amounts(currency))
    days = data.draw(st.lists(st.integers(0, 40), min_size=1, max_size=12).filter(lambda d: sum(d) > 0))
    pieces = split_by_days(amount, days, currency)
    assert sum(pieces) == amount
    assert all(p <= 0 for p in pieces)


@given(currency=CURRENCIES, data=st.data())
def test_allocate_sums_back(currency: str, data: st.DataObject) -> None:
    """shared.money.allocate (largest remainder): parts sum exactly, each within a minor unit of its share."""
    amount = data.draw(amounts(currency)) * data.draw(st.sampled_from([1, -1]))
    weights = data.draw(st.lists(st.integers(0, 1000), min_size=1, max_size=10).filter(lambda w: sum(w) > 0))
    parts = allocate(amount, weights, currency)
    assert sum(parts) == amount
    q = Decimal(1).scaleb(-minor_units(currency))
    for part, w in zip(parts, weights, strict=True):
        assert abs(part - amount * w / sum(weights)) < q
