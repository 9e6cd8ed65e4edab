"""Quantity-change presentation, per-change invoicing, interval changes, and the small defects of issue 11.

Worked examples cite the system whose documented behaviour they reproduce, with the arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from decimal import Decimal

from services.billing.app import billing_context
from services.billing.domain import (
    Activate,
    BillingContext,
    BillingState,
    Cancel,
    ChangePlan,
    ChangeQuantity,
    Item,
    Pause,
    Renew,
    TaxProfile,
    apply,
    new_billing_state,
    to_invoice_issued,
)
from services.billing.domain.engine import renewals_due
from shared.contracts import events as ev
from shared.contracts.commands import Timing

D = Decimal


def state(
    unit: str,
    anchor: date,
    *,
    quantity: int = 1,
    interval: str = "P1M",
    plan: str = "pro",
    country: str | None = "US",
) -> BillingState:
    return new_billing_state(
        subscription_id="pres",
        currency="USD",
        billing_interval=interval,
        billing_anchor=anchor,
        items=[Item(item_id="base", plan_id=plan, quantity=quantity, unit_amount=D(unit), price_date=anchor)],
        tax_profile=TaxProfile(country=country),
    )


def presenting(ctx: BillingContext, presentation: str) -> BillingContext:
    q = ctx.policy.quantity_change.model_copy(update={"presentation": presentation})
    return replace(ctx, policy=ctx.policy.model_copy(update={"quantity_change": q}))


def test_recurly_quantity_increase_is_one_line_for_the_difference(ctx: BillingContext) -> None:
    """Recurly docs ("Subscription changes", prorated quantity upgrade): $10/seat, 5 -> 8 seats on Apr 16.

    April has 30 days, 15 remain: one line, 3 seats x 10.00 x 15/30 = 15.00
    (= charge 8 x 10 x 15/30 = 40.00 minus credit 5 x 10 x 15/30 = 25.00).
    Kill Bill presents the same change as the credit and the charge (two lines).
    """
    s = apply(state("10.00", date(2025, 4, 1), quantity=5), Activate(on=date(2025, 4, 1)), ctx).state
    cmd = ChangeQuantity(on=date(2025, 4, 16), quantity=8, invoicing="invoice_immediately")
    diff = apply(s, cmd, presenting(ctx, "difference"))
    assert [(ln.kind, ln.quantity, ln.amount) for ln in diff.documents[0].lines] == [
        ("proration_charge", 3, D("15.00"))
    ]
    both = apply(s, cmd, presenting(ctx, "credit_and_charge"))
    assert [(ln.kind, ln.amount) for ln in both.documents[0].lines] == [
        ("proration_credit", D("-25.00")),
        ("proration_charge", D("40.00")),
    ]
    # The ledger is the same either way: what can be credited later does not depend on presentation.
    assert diff.state.charged == both.state.charged


def test_chargebee_immediate_prorated_quantity_decrease(ctx: BillingContext) -> None:
    """Chargebee docs ("Proration", reduce quantity mid-term with ``prorate=true``, ``end_of_term=false``).

    $10/seat, 8 -> 5 seats on Apr 16 of a 30-day April: credit 3 x 10 x 15/30 = 15.00, on a credit note
    at once (a credit note carries only credits), which becomes account credit.
    """
    c = presenting(ctx, "difference")
    s = apply(state("10.00", date(2025, 4, 1), quantity=8), Activate(on=date(2025, 4, 1)), c).state
    out = apply(
        s,
        ChangeQuantity(
            on=date(2025, 4, 16), quantity=5, timing=Timing.IMMEDIATE, invoicing="invoice_immediately"
        ),
        c,
    )
    (note,) = out.documents
    assert note.document_type == "credit_note" and note.total == D("-15.00")
    assert out.account_credit_after == D("15.00")
    # The May renewal of 5 seats (50.00) consumes the credit: 35.00 due.
    may = apply(out.state, Renew(on=date(2025, 5, 1)), c, account_credit=out.account_credit_after)
    assert (may.documents[0].total, may.documents[0].amount_due) == (D("50.00"), D("35.00"))


def test_stripe_interval_change_resets_the_anchor(ctx: BillingContext) -> None:
    """Stripe docs ("Change the billing interval"): monthly -> yearly resets the billing cycle anchor.

    $49/month from Mar 1, switched on Mar 16 to $490/year: credit of March's unused 16/31 x 49 = 25.290 -> 25.29,
    a full year from Mar 16 (490.00); the next renewal is Mar 16 next year.
    Kill Bill's "realign" and the ``keep`` policy: keeping the 1st bills Mar 16 - Mar 1 2026 = 350/365 x 490 = 469.863 -> 469.86.
    """
    s = apply(state("49.00", date(2025, 3, 1)), Activate(on=date(2025, 3, 1)), ctx).state
    cmd = ChangePlan(
        on=date(2025, 3, 16),
        plan_id="pro",
        billing_interval="P1Y",
        unit_amount=D("490.00"),
        timing=Timing.IMMEDIATE,
    )
    out = apply(s, cmd, ctx)
    # The new period is billed in advance from today, so the change is invoiced at once: 464.71.
    assert sorted(ln.amount for d in out.documents for ln in d.lines) == [D("-25.29"), D("490.00")]
    assert [d.total for d in out.documents] == [D("464.71")]
    assert out.state.charged_through == date(2026, 3, 16)
    pc = ctx.policy.plan_change.model_copy(update={"interval_change_anchor": "keep"})
    keep = replace(ctx, policy=ctx.policy.model_copy(update={"plan_change": pc}))
    kept = apply(s, cmd, keep)
    assert sorted(ln.amount for d in kept.documents for ln in d.lines) == [D("-25.29"), D("469.86")]
    assert kept.state.charged_through == date(2026, 3, 1)


def test_zuora_annual_to_monthly_at_period_end(ctx: BillingContext) -> None:
    """Zuora docs (Orders, "Update product" with a new billing period at the term end): no proration.

    $490/year from Jan 1 2025, switched to $49/month at the period end: nothing now; on Jan 1 2026 a
    monthly invoice of 49.00 for Jan 1 - Feb 1, and the months follow.
    """
    s = apply(state("490.00", date(2025, 1, 1), interval="P1Y"), Activate(on=date(2025, 1, 1)), ctx).state
    out = apply(
        s,
        ChangePlan(
            on=date(2025, 6, 1),
            plan_id="pro",
            billing_interval="P1M",
            unit_amount=D("49.00"),
            timing=Timing.PERIOD_END,
        ),
        ctx,
    )
    assert out.documents == () and out.new_pending == ()
    jan = apply(out.state, Renew(on=date(2026, 1, 1)), ctx)
    assert [(ln.service_period_end, ln.amount) for ln in jan.documents[0].lines] == [
        (date(2026, 2, 1), D("49.00"))
    ]


def test_invoice_now_or_next_per_change(ctx: BillingContext) -> None:
    """A change is invoiced now or rolled into the next invoice, by command (``invoice: now|next``)."""
    s = apply(state("49.00", date(2025, 3, 1)), Activate(on=date(2025, 3, 1)), ctx).state
    now = apply(s, ChangeQuantity(on=date(2025, 3, 16), quantity=2, invoicing="invoice_immediately"), ctx)
    nxt = apply(s, ChangeQuantity(on=date(2025, 3, 16), quantity=2, invoicing="pending"), ctx)
    # 16/31 x 49 = 25.29 charged for the second seat (credit 25.29, charge 50.58).
    assert [d.total for d in now.documents] == [D("25.29")] and now.new_pending == ()
    assert nxt.documents == () and sum(ln.amount for ln in nxt.new_pending) == D("25.29")
    april = apply(nxt.state, Renew(on=date(2025, 4, 1)), ctx)
    assert april.documents[0].total == D("98.00") + D("25.29")


def test_zero_rate_credit_has_no_negative_zero_tax(ctx: BillingContext) -> None:
    """Defect: a credit at 0 % tax carried "-0.00" in the published invoice event."""
    s = apply(state("49.00", date(2025, 3, 1)), Activate(on=date(2025, 3, 1)), ctx).state
    out = apply(s, Cancel(on=date(2025, 3, 16), timing=Timing.IMMEDIATE), ctx)
    doc = out.documents[0]
    assert doc.lines[0].amount < 0
    customer = ev.Customer(customer_id="c")
    published = json.loads(
        to_invoice_issued(doc, document_number="CN-1", customer=customer).model_dump_json()
    )
    assert published["lines"][0]["tax_amount"] == "0.00"
    assert published["tax"] == "0.00"


def test_missing_country_is_noted_not_silent(ctx: BillingContext) -> None:
    """Defect: a customer without a country was untaxed silently; now every such outcome says so."""
    wctx = billing_context(ctx.catalog)  # the worker's context: missing country = untaxed
    out = apply(state("49.00", date(2025, 3, 1), country=None), Activate(on=date(2025, 3, 1)), wctx)
    assert any("no country" in n for n in out.notes)
    taxed = apply(state("49.00", date(2025, 3, 1)), Activate(on=date(2025, 3, 1)), wctx)
    assert not any("no country" in n for n in taxed.notes)


def test_renewals_due_before_a_previewed_change(ctx: BillingContext) -> None:
    """Defect: the preview skipped renewals between the last one and ``--on``; these are what it runs first."""
    s = apply(state("49.00", date(2025, 1, 31)), Activate(on=date(2025, 1, 31)), ctx).state
    assert renewals_due(s, date(2025, 2, 27)) == []
    assert renewals_due(s, date(2025, 2, 28)) == [date(2025, 2, 28)]
    assert renewals_due(s, date(2025, 4, 15)) == [date(2025, 2, 28), date(2025, 3, 31)]
    assert renewals_due(s, date(2025, 2, 28), include_on=False) == []
    paused = apply(s, Pause(on=date(2025, 2, 10)), ctx).state
    assert renewals_due(paused, date(2025, 6, 1)) == []


def test_chargebee_downgrade_at_end_of_term_has_no_proration(ctx: BillingContext) -> None:
    """Chargebee docs ("Change subscription", ``end_of_term=true``): the change applies at the next renewal.

    Pro 49.00 x 3 seats from Jun 1, downgraded to starter on Jun 10 at the end of the term: nothing now;
    the Jul 1 renewal bills starter 19.00 x 3 = 57.00, with no credit for June.
    """
    s = apply(state("49.00", date(2025, 6, 1), quantity=3), Activate(on=date(2025, 6, 1)), ctx).state
    out = apply(s, ChangePlan(on=date(2025, 6, 10), plan_id="starter", timing=Timing.PERIOD_END), ctx)
    assert out.documents == () and out.new_pending == () and out.effective_on == date(2025, 7, 1)
    july = apply(out.state, Renew(on=date(2025, 7, 1)), ctx)
    assert [(ln.plan_id, ln.amount) for ln in july.documents[0].lines] == [("starter", D("57.00"))]


def test_recurly_upgrade_now_credit_and_charge_on_one_invoice(ctx: BillingContext) -> None:
    """Recurly docs ("Change subscription", timeframe ``now``, prorated): an upgrade invoiced at once.

    Starter 19.00 from Apr 1 to pro 49.00 on Apr 11 (April: 30 days, 20 left): credit 19.00 x 20/30 =
    12.667 -> -12.67, charge 49.00 x 20/30 = 32.667 -> 32.67, one invoice of 20.00.
    """
    s = apply(state("19.00", date(2025, 4, 1), plan="starter"), Activate(on=date(2025, 4, 1)), ctx).state
    out = apply(
        s,
        ChangePlan(
            on=date(2025, 4, 11),
            plan_id="pro",
            unit_amount=D("49.00"),
            timing=Timing.IMMEDIATE,
            invoicing="invoice_immediately",
        ),
        ctx,
    )
    assert [(ln.kind, ln.amount) for ln in out.documents[0].lines] == [
        ("proration_credit", D("-12.67")),
        ("proration_charge", D("32.67")),
    ]
    assert out.documents[0].total == D("20.00")


def test_interval_change_at_period_end_keeps_the_day_only_on_a_shared_boundary(ctx: BillingContext) -> None:
    """``keep`` at a period end: the anchor stays where the boundary is one of the new interval too.

    Quarterly 147.00 from Jan 1; monthly 49.00 from the Apr 1 boundary: anchor Jan 1 kept, Apr 1 - May 1.
    Monthly from Mar 1 to yearly 490.00 at Apr 1 (no yearly boundary from Mar 1): restarts on Apr 1.
    """
    pc = ctx.policy.plan_change.model_copy(update={"interval_change_anchor": "keep"})
    keep = replace(ctx, policy=ctx.policy.model_copy(update={"plan_change": pc}))
    q = apply(state("147.00", date(2025, 1, 1), interval="P3M"), Activate(on=date(2025, 1, 1)), keep).state
    change = ChangePlan(
        on=date(2025, 2, 10),
        plan_id="pro",
        billing_interval="P1M",
        unit_amount=D("49.00"),
        timing=Timing.PERIOD_END,
    )
    apr = apply(apply(q, change, keep).state, Renew(on=date(2025, 4, 1)), keep)
    assert (apr.state.billing_anchor, apr.state.charged_through) == (date(2025, 1, 1), date(2025, 5, 1))
    assert [d.total for d in apr.documents] == [D("49.00")]
    m = apply(state("49.00", date(2025, 3, 1)), Activate(on=date(2025, 3, 1)), keep).state
    to_year = ChangePlan(
        on=date(2025, 3, 10),
        plan_id="pro",
        billing_interval="P1Y",
        unit_amount=D("490.00"),
        timing=Timing.PERIOD_END,
    )
    year = apply(apply(m, to_year, keep).state, Renew(on=date(2025, 4, 1)), keep)
    assert (year.state.billing_anchor, year.state.charged_through) == (date(2025, 4, 1), date(2026, 4, 1))
    assert [d.total for d in year.documents] == [D("490.00")]
