"""Proration by whole days, and exact splits of an amount over days.

The convention (see docs/billing.md):

* numerator: days from the change date (inclusive) to the end of the period (exclusive);
* denominator: the actual length in days of the billing period containing the change
  (28-31 for a month, 365/366 for a year; for a first partial period, the full period
  that ends on the next anchor date);
* amount x numerator / denominator, rounded half-up to the currency's minor unit once
  per line.

That is the default convention. Others (fixed 30-day months, 30/360, Actual/360, the
change day counted as used, half-even rounding) are selected per catalog or plan: see
:mod:`shared.catalog.conventions`, :func:`convention_fraction` and :func:`remaining_share`.

All arithmetic is done on integer minor units, so no decimal context or precision
setting can change a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

from shared.catalog.conventions import ProrationConvention, Rounding, period_measure, span_measure
from shared.money import from_minor, to_minor
from shared.periods import days_between, period_length

ACTUAL = ProrationConvention()
"""The default convention: actual days, change day credited, half-up."""


@dataclass(frozen=True)
class ProrationFraction:
    """``days`` of ``period_days``: the share of a billing period a line covers."""

    days: int
    period_days: int

    def __post_init__(self) -> None:
        if self.period_days <= 0 or not 0 <= self.days <= self.period_days:
            raise ValueError(f"invalid proration fraction {self.days}/{self.period_days}")

    @property
    def is_full(self) -> bool:
        """True when the line covers the whole period (no proration)."""
        return self.days == self.period_days

    def __str__(self) -> str:
        return f"{self.days}/{self.period_days}"


def _div_half_up(numerator: int, denominator: int) -> int:
    # Integer division rounding half away from zero (the billing convention).
    q, r = divmod(abs(numerator), denominator)
    if 2 * r >= denominator:
        q += 1
    return q if numerator >= 0 else -q


def _div_half_even(numerator: int, denominator: int) -> int:
    # Integer division rounding half to even (banker's rounding), symmetric around zero.
    q, r = divmod(abs(numerator), denominator)
    if 2 * r > denominator or (2 * r == denominator and q % 2 == 1):
        q += 1
    return q if numerator >= 0 else -q


def divide(numerator: int, denominator: int, rounding: Rounding = "half_up") -> int:
    """``numerator / denominator`` rounded to an integer by the convention's rule."""
    if rounding == "half_even":
        return _div_half_even(numerator, denominator)
    return _div_half_up(numerator, denominator)


def prorate(
    amount: Decimal, fraction: ProrationFraction, currency: str, rounding: Rounding = "half_up"
) -> Decimal:
    """``amount * days / period_days`` rounded (half-up by default) to the currency's minor unit.

    >>> prorate(Decimal("24.95"), ProrationFraction(9, 31), "USD")
    Decimal('7.24')
    """
    if fraction.is_full:
        return amount
    units = to_minor(amount, currency)
    return from_minor(divide(units * fraction.days, fraction.period_days, rounding), currency)


def convention_fraction(
    convention: ProrationConvention, start: date, end: date, period_start: date, period_end: date
) -> ProrationFraction:
    """The share ``[start, end)`` is of the billing period ``[period_start, period_end)``, by the day count."""
    return ProrationFraction(
        span_measure(convention.day_count, start, end, period_start, period_end),
        period_measure(convention.day_count, period_start, period_end),
    )


def credit_from(change_date: date, convention: ProrationConvention) -> date:
    """First day credited back on a change dated ``change_date`` (the day after, when the change day counts as used)."""
    return change_date + timedelta(days=1) if convention.change_day_used else change_date


def remaining_share(
    convention: ProrationConvention,
    change_date: date,
    line_start: date,
    line_end: date,
    period: tuple[date, date] | None = None,
) -> ProrationFraction:
    """Share of a charged line ``[line_start, line_end)`` left from ``change_date``, by the convention.

    ``period`` is the billing period the line was charged in (the line's own span when
    unknown). A line covering its whole period measures the period's denominator, so a
    full month under ``fixed_30`` is 30 days whatever its calendar length.
    """
    p_start, p_end = period or (line_start, line_end)
    total = span_measure(convention.day_count, line_start, line_end, p_start, p_end)
    if total <= 0:
        return ProrationFraction(0, 1)
    first = min(max(credit_from(change_date, convention), line_start), line_end)
    left = span_measure(convention.day_count, first, line_end, p_start, p_end)
    return ProrationFraction(min(left, total), total)


def remaining_fraction(change_date: date, period_start: date, period_end: date) -> ProrationFraction:
    """Share of ``[period_start, period_end)`` left from ``change_date`` (inclusive) to the end.

    A change dated before the period counts the whole period; one dated on or after its
    end counts nothing.
    """
    length = period_length(period_start, period_end)
    start = min(max(change_date, period_start), period_end)
    return ProrationFraction(days_between(start, period_end), length)


def unused_credit(
    charged_amount: Decimal,
    service_period_start: date,
    service_period_end: date,
    change_date: date,
    currency: str,
    *,
    already_credited: Decimal = Decimal(0),
    convention: ProrationConvention = ACTUAL,
    period: tuple[date, date] | None = None,
) -> Decimal:
    """Credit (a positive number) for the unused part of a charged line, from ``change_date``.

    Prorated from the charged line's own amount and service period, half-up, and capped
    so that the line's credits never exceed what was charged:
    ``min(prorated unused, charged_amount) - already_credited``, never below zero.
    Counting ``already_credited`` towards the prorated total makes a second credit of
    the same days a no-op.
    """
    if convention == ACTUAL and period is None:
        fraction = remaining_fraction(change_date, service_period_start, service_period_end)
    else:
        fraction = remaining_share(convention, change_date, service_period_start, service_period_end, period)
    target = prorate(charged_amount, fraction, currency, convention.rounding)
    if charged_amount >= 0:
        return max(Decimal(0), min(target, charged_amount) - already_credited)
    # A negative charged line (an override below zero) is never "credited".
    return Decimal(0)


def used_amount(
    charged_amount: Decimal,
    service_period_start: date,
    service_period_end: date,
    change_date: date,
    currency: str,
    *,
    convention: ProrationConvention = ACTUAL,
    period: tuple[date, date] | None = None,
) -> Decimal:
    """The part of a charged line that was used before ``change_date``: what is not credited.

    Defined as the complement of :func:`unused_credit`, so used + credit == charged, exactly.
    """
    return charged_amount - unused_credit(
        charged_amount,
        service_period_start,
        service_period_end,
        change_date,
        currency,
        convention=convention,
        period=period,
    )


def split_by_days(amount: Decimal, day_counts: Sequence[int], currency: str) -> list[Decimal]:
    """Split ``amount`` over consecutive runs of days so the pieces sum back to it exactly.

    Cumulative rounding: the amount through the end of run ``k`` is
    ``round_half_up(amount * days so far / all days)``, and each piece is the difference
    of consecutive cumulative amounts. The last piece therefore takes the remainder,
    every piece is within one minor unit of its exact share, and no piece has the
    opposite sign of ``amount`` (which a "round each, last takes the rest" split can).
    """
    if not day_counts or any(d < 0 for d in day_counts) or sum(day_counts) <= 0:
        raise ValueError(f"cannot split over day counts {list(day_counts)}")
    total_days = sum(day_counts)
    units = to_minor(amount, currency)
    pieces: list[Decimal] = []
    before = 0
    cumulative_days = 0
    for days in day_counts:
        cumulative_days += days
        through = _div_half_up(units * cumulative_days, total_days)
        pieces.append(from_minor(through - before, currency))
        before = through
    return pieces


def split_period(
    amount: Decimal, period_start: date, period_end: date, split_days: Sequence[date], currency: str
) -> list[tuple[date, date, Decimal]]:
    """Cut ``[period_start, period_end)`` at the given days and price each piece; pieces sum to ``amount``."""
    cuts = sorted({d for d in split_days if period_start < d < period_end})
    bounds = [period_start, *cuts, period_end]
    spans = list(pairwise(bounds))
    pieces = split_by_days(amount, [days_between(a, b) for a, b in spans], currency)
    return [(a, b, p) for (a, b), p in zip(spans, pieces, strict=True)]
