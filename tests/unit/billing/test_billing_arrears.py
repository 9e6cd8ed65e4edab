"""In-arrears plans: worked examples (Kill Bill ``IN_ARREAR``, Lago ``pay_in_arrears``) and properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.billing.domain import (
    Activate,
    BillingContext,
    BillingOutcome,
    BillingState,
    Cancel,
    ChangePlan,
    ChangeQuantity,
    Item,
    Pause,
    Renew,
    Resume,
    TaxProfile,
    apply,
    new_billing_state,
    preview,
)
from services.billing.domain.engine import BillingCommand
from services.billing.domain.policy import ChangeRule, PlanChangePolicy
from shared.contracts.commands import Timing
from shared.money import from_minor
from shared.periods import add_interval

D = Decimal


def arrears_ctx(ctx: BillingContext, *plan_ids: str) -> BillingContext:
    """The context whose catalog bills these plans in arrears."""
    plans = tuple(
        p.model_copy(update={"charge_mode": "in_arrears"}) if p.id in plan_ids else p
        for p in ctx.catalog.plans
    )
    return replace(ctx, catalog=ctx.catalog.model_copy(update={"plans": plans}))


def state(
    unit: str,
    *,
    anchor: date,
    plan: str = "pro",
    interval: str = "P1M",
    currency: str = "USD",
    addon: str | None = None,
) -> BillingState:
    items = [Item(item_id="base", plan_id=plan, unit_amount=D(unit), price_date=anchor)]
    if addon:
        items.append(Item(item_id=addon, plan_id=addon, unit_amount=D(unit), price_date=anchor))
    return new_billing_state(
        subscription_id="arr",
        currency=currency,
        billing_interval=interval,
        billing_anchor=anchor,
        items=items,
        tax_profile=TaxProfile(country="US"),
    )


def run(s: BillingState, ctx: BillingContext, *cmds: BillingCommand) -> list[BillingOutcome]:
    out = []
    credit = D(0)
    for cmd in cmds:
        o = apply(s, cmd, ctx, account_credit=credit)
        out.append(o)
        s, credit = o.state, o.account_credit_after
    return out


def lines(o: BillingOutcome) -> list[tuple[str, str, Decimal]]:
    return [(d.document_type, ln.kind, ln.amount) for d in o.documents for ln in d.lines]


def test_kill_bill_in_arrear_monthly_then_cancel(ctx: BillingContext) -> None:
    """Kill Bill catalog ``billingMode="IN_ARREAR"`` (catalog docs, "Billing mode"; beatrix TestInArrear*).

    $100/month from Jan 1: nothing at start; Feb 1 invoices January (full, 100.00); a cancellation
    on Mar 10 invoices Mar 1..9 at once: 9/31 x 100 = 29.032 -> 29.03.
    """
    c = arrears_ctx(ctx, "pro")
    s = state("100.00", anchor=date(2025, 1, 1))
    start, feb, cancel = run(
        s, c, Activate(on=date(2025, 1, 1)), Renew(on=date(2025, 2, 1)), Renew(on=date(2025, 3, 1))
    )[0:3]
    assert start.documents == ()
    assert lines(feb) == [("invoice", "recurring", D("100.00"))]
    assert feb.documents[0].lines[0].service_period_start == date(2025, 1, 1)
    after = run(s, c, Activate(on=date(2025, 1, 1)), Renew(on=date(2025, 2, 1)), Renew(on=date(2025, 3, 1)))
    end = apply(after[-1].state, Cancel(on=date(2025, 3, 10), timing=Timing.IMMEDIATE), c)
    assert lines(end) == [("invoice", "proration_charge", D("29.03"))]
    assert cancel.documents[0].lines[0].amount == D("100.00")  # February, 28 days, billed on Mar 1


def test_lago_pay_in_arrears_upgrade_bills_used_days_at_once(ctx: BillingContext) -> None:
    """Lago docs (plans, "upgrades and downgrades", pay in arrears): EUR 100/month, upgraded on Jan 15.

    The old plan is invoiced at once for the days used, Jan 1..14: 14/31 x 100 = 45.161 -> 45.16;
    the new plan accrues from Jan 15 and is billed at the period end.
    """
    c = arrears_ctx(ctx, "pro", "enterprise")
    c = replace(
        c,
        policy=c.policy.model_copy(
            update={
                "plan_change": PlanChangePolicy(
                    upgrade=ChangeRule(timing=Timing.IMMEDIATE, invoicing="invoice_immediately")
                )
            }
        ),
    )
    s = state("100.00", anchor=date(2025, 1, 1), currency="EUR")
    active = apply(s, Activate(on=date(2025, 1, 1)), c)
    up = apply(
        active.state, ChangePlan(on=date(2025, 1, 15), plan_id="enterprise", unit_amount=D("300.00")), c
    )
    assert lines(up) == [("invoice", "proration_charge", D("45.16"))]
    feb = apply(up.state, Renew(on=date(2025, 2, 1)), c)
    # Enterprise Jan 15..31 = 17 days: 17/31 x 300 = 164.516 -> 164.52.
    assert lines(feb) == [("invoice", "proration_charge", D("164.52"))]


def test_advance_and_arrears_on_one_subscription_and_pause(ctx: BillingContext) -> None:
    """Base plan in advance, add-on in arrears; a pause bills the add-on's served days with the next invoice."""
    c = arrears_ctx(ctx, "extra-storage")
    s = state("30.00", anchor=date(2025, 4, 1), addon="extra-storage")
    start = apply(s, Activate(on=date(2025, 4, 1)), c)
    assert lines(start) == [("invoice", "recurring", D("30.00"))]  # only the base, in advance
    paused = apply(start.state, Pause(on=date(2025, 4, 16)), c)
    # Base credit 15/30 x 30 = 15.00; add-on served Apr 1..15 = 15/30 x 30 = 15.00: they net to zero,
    # so one invoice of total 0.00 carries both at once.
    assert [(ln.kind, ln.amount) for d in paused.documents for ln in d.lines] == [
        ("proration_credit", D("-15.00")),
        ("proration_charge", D("15.00")),
    ]
    resumed = apply(paused.state, Resume(on=date(2025, 4, 21)), c)
    # Base Apr 21..30 = 10/30 x 30 = 10.00.
    assert [d.total for d in resumed.documents] == [D("10.00")]
    may = apply(resumed.state, Renew(on=date(2025, 5, 1)), c)
    # Add-on served Apr 21..30 = 10/30 x 30 = 10.00 in arrears, base May in advance 30.00.
    assert sorted(ln.amount for d in may.documents for ln in d.lines) == [D("10.00"), D("30.00")]


@given(
    currency=st.sampled_from(["USD", "JPY", "BHD"]),
    interval=st.sampled_from(["P1W", "P1M", "P3M", "P1Y"]),
    anchor=st.dates(min_value=date(2023, 1, 1), max_value=date(2027, 12, 31)),
    minor=st.integers(1, 10**8),
    data=st.data(),
)
def test_advance_and_arrears_totals_match_over_a_year(
    ctx: BillingContext, currency: str, interval: str, anchor: date, minor: int, data: st.DataObject
) -> None:
    """Same price in advance (base) and in arrears (add-on): over N periods both bill price x periods served.

    A start inside the first period gives both the same prorated stub.
    """
    c = arrears_ctx(ctx, "extra-storage")
    unit = from_minor(minor, currency)
    s = state(str(unit), anchor=anchor, interval=interval, currency=currency, addon="extra-storage")
    periods = {"P1W": 52, "P1M": 12, "P3M": 4, "P1Y": 1}[interval]
    # A start inside the period that ends on the anchor (its length: anchor minus one interval).
    start_offset = data.draw(st.integers(0, (anchor - add_interval(anchor, interval, -1)).days - 1))
    start = anchor - timedelta(days=start_offset)  # in the period that ends on the anchor
    cmds: list[BillingCommand] = [Activate(on=start)]
    cmds += [
        Renew(on=add_interval(anchor, interval, k)) for k in range(0 if start_offset else 1, periods + 1)
    ]
    outs = run(s, c, *cmds)
    before = [s] + [o.state for o in outs[:-1]]
    for prior, cmd, out in zip(before, cmds, outs, strict=True):
        assert preview(prior, cmd, c).documents == out.documents
    end = add_interval(anchor, interval, periods)
    served = [
        ln
        for o in outs
        for d in o.documents
        for ln in d.lines
        if ln.service_period_end is not None and ln.service_period_end <= end
    ]
    advance = [ln.amount for ln in served if ln.item_id == "base"]
    arrears = [ln.amount for ln in served if ln.item_id == "extra-storage"]
    assert advance == arrears  # line for line: the same periods, the same proration
    if start_offset:
        stub = [ln.amount for ln in served if ln.service_period_start == start]
        assert len(stub) == 2 and stub[0] == stub[1]
        assert sum(advance) == unit * periods + stub[0]
    else:
        assert sum(advance) == unit * periods


def test_a_change_on_the_boundary_before_the_renewal_loses_no_arrears(ctx: BillingContext) -> None:
    """A seat change at 00:00 of a renewal day, before the renewal: the period that ended is still billed.

    100.00/seat in arrears from Jan 1: on Feb 1 (before the renewal) 1 -> 2 seats. January is billed
    once, 100.00 (with the change, rolled into the renewal invoice by policy); February at 2 seats on Mar 1.
    """
    c = arrears_ctx(ctx, "pro")
    s = state("100.00", anchor=date(2025, 1, 1))
    active = apply(s, Activate(on=date(2025, 1, 1)), c)
    changed = apply(active.state, ChangeQuantity(on=date(2025, 2, 1), quantity=2), c)
    feb = apply(changed.state, Renew(on=date(2025, 2, 1)), c)
    jan_lines = [ln for d in feb.documents for ln in d.lines if ln.service_period_start == date(2025, 1, 1)]
    assert [(ln.quantity, ln.amount) for ln in jan_lines] == [(1, D("100.00"))]
    mar = apply(feb.state, Renew(on=date(2025, 3, 1)), c)
    assert [(ln.quantity, ln.amount) for d in mar.documents for ln in d.lines] == [(2, D("200.00"))]
