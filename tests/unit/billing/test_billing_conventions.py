"""Proration conventions (day count, change day, rounding): worked examples and properties.

Every example writes its arithmetic; the source system is named where the convention is theirs.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.billing.domain import (
    Activate,
    BillingContext,
    Cancel,
    ChangePlan,
    Item,
    TaxProfile,
    apply,
    new_billing_state,
    preview,
)
from services.billing.domain.proration import (
    ProrationFraction,
    convention_fraction,
    prorate,
    unused_credit,
    used_amount,
)
from shared.catalog import load_catalog
from shared.catalog.conventions import ProrationConvention, ProrationOverride, days_30_360
from shared.money import from_minor
from shared.periods import add_interval, period_containing

D = Decimal
CONVENTIONS = st.builds(
    ProrationConvention,
    day_count=st.sampled_from(["actual", "fixed_30", "30_360", "actual_360"]),
    change_day_used=st.booleans(),
    rounding=st.sampled_from(["half_up", "half_even"]),
)


def with_convention(ctx: BillingContext, convention: ProrationConvention) -> BillingContext:
    """The context with the catalog's proration convention replaced."""
    return replace(ctx, catalog=ctx.catalog.model_copy(update={"proration": convention}))


def state(unit: str, *, anchor: date, interval: str = "P1M", currency: str = "USD", plan: str = "pro"):  # type: ignore[no-untyped-def]
    return new_billing_state(
        subscription_id="conv",
        currency=currency,
        billing_interval=interval,
        billing_anchor=anchor,
        items=[Item(item_id="base", plan_id=plan, unit_amount=D(unit), price_date=anchor)],
        tax_profile=TaxProfile(country="US"),
    )


# --------------------------------------------------------------------------- worked examples


def test_kill_bill_fixed_30_days_leading_stub(ctx: BillingContext) -> None:
    """Kill Bill docs (subscription billing, "proration"), with ``proration.fixed.days=30``.

    $24.95/month, BCD 25, start Sep 16: period Aug 25 - Sep 25 is 31 actual days, but a
    fixed-30 month is 30: 9/30 x 24.95 = 7.485 -> 7.49 half-up (7.24 with actual days, 9/31).
    """
    fixed = with_convention(ctx, ProrationConvention(day_count="fixed_30"))
    s = state("24.95", anchor=date(2025, 9, 25))
    out = apply(s, Activate(on=date(2025, 9, 16)), fixed)
    assert [line.amount for line in out.documents[0].lines] == [D("7.49")]
    # Half-even rounding of the same 7.485 goes to the even cent.
    even = with_convention(ctx, ProrationConvention(day_count="fixed_30", rounding="half_even"))
    assert apply(s, Activate(on=date(2025, 9, 16)), even).documents[0].lines[0].amount == D("7.48")
    # The default (actual days) still gives Kill Bill's documented 7.24.
    assert apply(s, Activate(on=date(2025, 9, 16)), ctx).documents[0].lines[0].amount == D("7.24")


def test_zuora_30_360_annual_stub(ctx: BillingContext) -> None:
    """Zuora's 30/360 proration option (Billing settings, "Proration: 30/360").

    1,200.00 a year anchored Jan 1, start Mar 15: 30/360 days Mar 15 -> Jan 1
    = 360 x 1 + 30 x (1 - 3) + (1 - 15) = 286; 286/360 x 1200 = 953.333 -> 953.33.
    Actual/360 counts actual days over 360: 292/360 x 1200 = 973.333 -> 973.33 (292 actual days).
    """
    assert days_30_360(date(2025, 3, 15), date(2026, 1, 1)) == 286
    s = state("1200.00", anchor=date(2026, 1, 1), interval="P1Y")
    c360 = with_convention(ctx, ProrationConvention(day_count="30_360"))
    assert apply(s, Activate(on=date(2025, 3, 15)), c360).documents[0].lines[0].amount == D("953.33")
    assert (date(2026, 1, 1) - date(2025, 3, 15)).days == 292
    a360 = with_convention(ctx, ProrationConvention(day_count="actual_360"))
    assert apply(s, Activate(on=date(2025, 3, 15)), a360).documents[0].lines[0].amount == D("973.33")


def test_lago_termination_day_counts_as_used(ctx: BillingContext) -> None:
    """Lago docs (subscriptions, "terminate a subscription", pay in advance): the termination day is used.

    EUR 100/month, Jan 1 - Feb 1 (31 days), terminated Jan 15: used Jan 1..15 = 15 days,
    credited Jan 16..31 = 16 days: 16/31 x 100 = 51.613 -> 51.61. With half-open periods
    (default) the 15th is credited too: 17/31 x 100 = 54.839 -> 54.84.
    """
    s = state("100.00", anchor=date(2025, 1, 1), currency="EUR")
    s = s.model_copy(update={"tax_profile": TaxProfile(country="US")})
    lago = with_convention(ctx, ProrationConvention(change_day_used=True))
    for c, expected in ((lago, D("-51.61")), (ctx, D("-54.84"))):
        active = apply(s, Activate(on=date(2025, 1, 1)), c).state
        out = apply(active, Cancel(on=date(2025, 1, 15), timing="immediate"), c)
        assert [line.amount for line in out.documents[0].lines] == [expected]


def test_plan_override_wins_over_catalog() -> None:
    catalog = load_catalog().model_copy(update={"proration": ProrationConvention(day_count="30_360")})
    pro = catalog.plan("pro").model_copy(update={"proration": ProrationOverride(rounding="half_even")})
    catalog = catalog.model_copy(update={"plans": tuple(pro if p.id == "pro" else p for p in catalog.plans)})
    assert catalog.proration_for("pro") == ProrationConvention(day_count="30_360", rounding="half_even")
    assert catalog.proration_for("starter") == ProrationConvention(day_count="30_360")


@pytest.mark.parametrize(
    ("amount", "days", "period", "half_up", "half_even"),
    [("0.05", 1, 2, "0.03", "0.02"), ("0.03", 1, 2, "0.02", "0.02"), ("-0.05", 1, 2, "-0.03", "-0.02")],
)
def test_rounding_modes(amount: str, days: int, period: int, half_up: str, half_even: str) -> None:
    f = ProrationFraction(days, period)
    assert prorate(D(amount), f, "USD", "half_up") == D(half_up)
    assert prorate(D(amount), f, "USD", "half_even") == D(half_even)


# --------------------------------------------------------------------------- properties

DATES = st.dates(min_value=date(2023, 1, 1), max_value=date(2027, 12, 31))
INTERVALS = st.sampled_from(["P1W", "P1M", "P3M", "P1Y"])


@given(conv=CONVENTIONS, anchor=DATES, interval=INTERVALS, data=st.data())
def test_whole_period_is_full_and_fractions_stay_in_range(
    conv: ProrationConvention, anchor: date, interval: str, data: st.DataObject
) -> None:
    start, end = anchor, add_interval(anchor, interval)
    assert convention_fraction(conv, start, end, start, end).is_full
    a = data.draw(st.dates(min_value=start, max_value=end - timedelta(days=1)))
    f = convention_fraction(conv, a, end, start, end)
    assert 0 <= f.days <= f.period_days


@given(conv=CONVENTIONS, anchor=DATES, interval=INTERVALS, minor=st.integers(0, 10**9), data=st.data())
def test_credit_plus_used_equals_charged(
    conv: ProrationConvention, anchor: date, interval: str, minor: int, data: st.DataObject
) -> None:
    """Per charged period, under every convention: credit + used = charged, 0 <= credit <= charged."""
    currency = data.draw(st.sampled_from(["USD", "JPY", "BHD"]))
    charged = from_minor(minor, currency)
    period = (anchor, add_interval(anchor, interval))
    line_start = data.draw(st.dates(min_value=period[0], max_value=period[1] - timedelta(days=1)))
    on = data.draw(
        st.dates(min_value=line_start - timedelta(days=3), max_value=period[1] + timedelta(days=3))
    )
    credit = unused_credit(charged, line_start, period[1], on, currency, convention=conv, period=period)
    used = used_amount(charged, line_start, period[1], on, currency, convention=conv, period=period)
    assert credit + used == charged
    assert 0 <= credit <= charged
    if on <= line_start and not conv.change_day_used:
        assert credit == charged  # nothing used yet: everything back


@given(conv=CONVENTIONS, anchor=DATES, interval=st.sampled_from(["P1M", "P3M", "P1Y"]), data=st.data())
def test_change_under_every_convention_preview_equals_apply(
    ctx: BillingContext, conv: ProrationConvention, anchor: date, interval: str, data: st.DataObject
) -> None:
    """Activate, change plan immediately on a random day: credits never exceed charges; preview == apply."""
    c = with_convention(ctx, conv)
    s = state("490.00" if interval == "P1Y" else "49.00", anchor=anchor, interval=interval)
    start = data.draw(st.dates(min_value=anchor - timedelta(days=20), max_value=anchor + timedelta(days=20)))
    active = apply(s, Activate(on=start), c)
    charged = sum(line.amount for line in active.documents[0].lines)
    period = period_containing(start, billing_anchor=anchor, interval=interval)
    on = data.draw(st.dates(min_value=start, max_value=period[1] - timedelta(days=1)))
    cmd = ChangePlan(on=on, plan_id="enterprise", unit_amount=D("99.00"), timing="immediate")
    out = apply(active.state, cmd, c)
    assert preview(active.state, cmd, c) == out
    credits = -sum(line.amount for line in out.new_pending if line.kind == "proration_credit")
    assert 0 <= credits <= charged
