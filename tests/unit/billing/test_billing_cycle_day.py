"""Billing day independent of the start: account billing day, explicit anchor, calendar billing, backdating."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.billing.domain import (
    Activate,
    BillingContext,
    BillingState,
    Item,
    Renew,
    TaxProfile,
    apply,
    new_billing_state,
)
from shared.catalog.conventions import aligned_first_period
from shared.periods import add_interval, days_in_month, first_period

D = Decimal


def started(
    unit: str,
    start: date,
    interval: str = "P1M",
    *,
    currency: str = "USD",
    plan: str = "pro",
    cycle_day: int | None = None,
    calendar: bool = False,
    anchor: date | None = None,
) -> BillingState:
    boundary, anchor_day, _, _ = first_period(
        start, interval, cycle_day=cycle_day, calendar=calendar, anchor=anchor
    )
    return new_billing_state(
        subscription_id="bcd",
        currency=currency,
        billing_interval=interval,
        billing_anchor=boundary,
        anchor_day=anchor_day,
        items=[Item(item_id="base", plan_id=plan, unit_amount=D(unit), price_date=start)],
        tax_profile=TaxProfile(country="US"),
    )


def amounts(
    state: BillingState, ctx: BillingContext, cmd: Activate | Renew
) -> list[tuple[date, date, Decimal]]:
    out = apply(state, cmd, ctx)
    return [
        (ln.service_period_start, ln.service_period_end, ln.amount)  # type: ignore[misc]
        for d in out.documents
        for ln in d.lines
    ]


def test_kill_bill_account_bcd_examples(ctx: BillingContext) -> None:
    """Kill Bill docs (userguide "Subscription billing", BCD examples), $24.95/month.

    BCD 25, start Sep 16: stub Sep 16 - Sep 25 of the period Aug 25 - Sep 25 (31 days): 9/31 x 24.95 = 7.243 -> 7.24.
    BCD 17, start Sep 25: stub Sep 25 - Oct 17 of Sep 17 - Oct 17 (30 days): 22/30 x 24.95 = 18.297 -> 18.30.
    """
    s = started("24.95", date(2025, 9, 16), cycle_day=25)
    assert amounts(s, ctx, Activate(on=date(2025, 9, 16))) == [
        (date(2025, 9, 16), date(2025, 9, 25), D("7.24"))
    ]
    s = started("24.95", date(2025, 9, 25), cycle_day=17)
    assert amounts(s, ctx, Activate(on=date(2025, 9, 25))) == [
        (date(2025, 9, 25), date(2025, 10, 17), D("18.30"))
    ]


def test_lago_calendar_billing_prorates_the_first_period(ctx: BillingContext) -> None:
    """Lago docs (plans, "billing period: calendar"): EUR 100/month, pay in advance, start Jan 15.

    First period Jan 15 - Feb 1 (31-day January): 17/31 x 100 = 54.839 -> 54.84; Feb 1 bills a full month.
    Quarterly calendar, start May 10: Apr 1 - Jul 1 is 91 days, stub 52 days: 52/91 x 300 = 171.428 -> 171.43.
    """
    s = started("100.00", date(2025, 1, 15), calendar=True, currency="EUR")
    first = apply(s, Activate(on=date(2025, 1, 15)), ctx)
    assert [ln.amount for ln in first.documents[0].lines] == [D("54.84")]
    assert first.state.charged_through == date(2025, 2, 1)
    assert amounts(first.state, ctx, Renew(on=date(2025, 2, 1))) == [
        (date(2025, 2, 1), date(2025, 3, 1), D("100.00"))
    ]
    q = started("300.00", date(2025, 5, 10), "P3M", calendar=True)
    assert amounts(q, ctx, Activate(on=date(2025, 5, 10))) == [
        (date(2025, 5, 10), date(2025, 7, 1), D("171.43"))
    ]


def test_stripe_billing_cycle_anchor_and_backdate(ctx: BillingContext) -> None:
    """Stripe docs ("Set the billing cycle date"; "Backdate a subscription"), by whole days.

    $30/month created Sep 15 with ``billing_cycle_anchor`` Oct 1: prorated Sep 15 - Oct 1 of the
    30-day September: 16/30 x 30 = 16.00, then full months from Oct 1.
    ``backdate_start_date`` Jan 1 for a $20/month subscription created Feb 14: January and
    February are invoiced at once (20.00 + 20.00); the anchor stays on the 1st (next renewal Mar 1).
    """
    s = started("30.00", date(2025, 9, 15), anchor=date(2025, 10, 1))
    assert amounts(s, ctx, Activate(on=date(2025, 9, 15))) == [
        (date(2025, 9, 15), date(2025, 10, 1), D("16.00"))
    ]
    b = started("20.00", date(2025, 1, 1))
    out = apply(b, Activate(on=date(2025, 1, 1), through=date(2025, 2, 14)), ctx)
    assert [(ln.service_period_start, ln.amount) for ln in out.documents[0].lines] == [
        (date(2025, 1, 1), D("20.00")),
        (date(2025, 2, 1), D("20.00")),
    ]
    assert out.documents[0].issue_date == date(2025, 2, 14)
    assert out.state.charged_through == date(2025, 3, 1) and out.state.billing_anchor == date(2025, 1, 1)


def test_alignment_policy_per_interval(ctx: BillingContext) -> None:
    """Kill Bill's default catalog: monthly items on the account's day, annual on the subscription's date."""
    catalog = ctx.catalog.model_copy(update={"alignment": {"P1M": "account", "P1Y": "subscription"}})
    start = date(2025, 3, 20)
    monthly = aligned_first_period(catalog.alignment_for("P1M"), start, "P1M", account_cycle_day=1)
    yearly = aligned_first_period(catalog.alignment_for("P1Y"), start, "P1Y", account_cycle_day=1)
    assert monthly == (date(2025, 3, 1), None, start, date(2025, 4, 1))
    assert yearly == (start, None, start, date(2026, 3, 20))
    assert catalog.alignment_for("P3M") == "subscription"


@given(
    start=st.dates(min_value=date(2023, 1, 1), max_value=date(2028, 12, 31)),
    cycle_day=st.integers(1, 31),
    interval=st.sampled_from(["P1M", "P3M", "P1Y"]),
)
def test_cycle_day_boundaries_clamp_to_month_ends(start: date, cycle_day: int, interval: str) -> None:
    """Every boundary falls on the billing day, clamped to shorter months; the stub never exceeds a period."""
    anchor, anchor_day, p_start, end = first_period(start, interval, cycle_day=cycle_day)
    assert anchor <= start == p_start < end
    for k in range(0, 14):
        b = add_interval(anchor, interval, k, anchor_day=anchor_day)
        assert b.day == min(cycle_day, days_in_month(b.year, b.month))
    assert end == add_interval(anchor, interval, 1, anchor_day=anchor_day)


@given(
    start=st.dates(min_value=date(2023, 1, 1), max_value=date(2028, 12, 31)),
    interval=st.sampled_from(["P1W", "P1M", "P3M", "P1Y"]),
    data=st.data(),
)
def test_calendar_stub_plus_renewals_equal_whole_periods(
    ctx: BillingContext, start: date, interval: str, data: st.DataObject
) -> None:
    """Calendar billing: the stub is billed at the start, and from the first boundary each period is full."""
    c = replace(ctx)
    s = started("120.00", start, interval, calendar=True)
    out = apply(s, Activate(on=start), c)
    boundary = out.state.charged_through
    assert boundary is not None and boundary > start
    stub = out.documents[0].lines[0].amount
    assert D(0) < stub <= D("120.00")
    renewed = apply(out.state, Renew(on=boundary), c)
    assert [ln.amount for ln in renewed.documents[0].lines] == [D("120.00")]
    days_back = data.draw(st.integers(0, 400))
    backdated = apply(s, Activate(on=start, through=start + timedelta(days=days_back)), c)
    total = sum(ln.amount for ln in backdated.documents[0].lines)
    n_full = len(backdated.documents[0].lines) - 1
    assert total == stub + D("120.00") * n_full
