"""Worked examples of the billing engine, each with its arithmetic.

Catalog (shared/catalog/catalog.yaml): starter USD 19.00/month, 190.00/year, JPY 2900/month;
pro USD 49.00/month (59.00 from 2027-01-01), 490.00/year, EUR 45.00/month, BHD 18.500/month;
enterprise USD 99.00/month, 990.00/year; extra-storage add-on USD 10.00/month.
Customers are in the US without a region (0% tax) unless the example says otherwise.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.billing.domain import (
    Activate,
    AddAddon,
    AddOneOff,
    AddSetupCredit,
    BillingContext,
    BillingError,
    BillingOutcome,
    BillingState,
    Cancel,
    ChangePlan,
    ChangeQuantity,
    InvoicePending,
    Item,
    Pause,
    RemoveAddon,
    Renew,
    Resume,
    apply,
    preview,
)
from services.billing.domain.engine import BillingCommand, state_from_snapshot
from services.billing.domain.pauses import billable_service_windows
from shared.contracts import events as ev

from .conftest import StateFactory

D = Decimal


def run(
    state: BillingState, ctx: BillingContext, *commands: BillingCommand, credit: Decimal = D(0)
) -> list[BillingOutcome]:
    """Apply commands in order, threading state and account credit; return every outcome."""
    outcomes = []
    for cmd in commands:
        out = apply(state, cmd, ctx, account_credit=credit)
        outcomes.append(out)
        state, credit = out.state, out.account_credit_after
    return outcomes


def amounts(out: BillingOutcome) -> list[tuple[str, Decimal]]:
    return [(line.kind, line.amount) for doc in out.documents for line in doc.lines]


def test_first_partial_period(ctx: BillingContext, make_state: StateFactory) -> None:
    """Starter 19.00/month, billing anchor day 1, subscription starts 2024-03-20.

    The period containing Mar 20 is [Mar 1, Apr 1) = 31 days; Mar 20..31 = 12 days.
    12/31 x 19.00 = 7.3548... -> 7.35. Then Apr 1 bills the full 19.00.
    """
    state = make_state(plan_id="starter", anchor=date(2024, 4, 1), started_on=date(2024, 3, 20))
    first, renewal = run(state, ctx, Activate(on=date(2024, 3, 20)), Renew(on=date(2024, 4, 1)))
    [invoice] = first.documents
    assert amounts(first) == [("recurring", D("7.35"))]
    line = invoice.lines[0]
    assert (line.service_period_start, line.service_period_end) == (date(2024, 3, 20), date(2024, 4, 1))
    assert "12/31" in line.description
    assert invoice.total == invoice.amount_due == D("7.35")
    assert first.state.charged_through == date(2024, 4, 1)
    assert amounts(renewal) == [("recurring", D("19.00"))]
    assert renewal.state.charged_through == date(2024, 5, 1)


def test_kill_bill_example_through_the_engine(ctx: BillingContext, make_state: StateFactory) -> None:
    """24.95/month (price override), anchor day 25, start Sep 16: 9/31 x 24.95 = 7.2435 -> 7.24."""
    state = make_state(unit_amount=D("24.95"), anchor=date(2024, 9, 25), started_on=date(2024, 9, 16))
    [out] = run(state, ctx, Activate(on=date(2024, 9, 16)))
    assert amounts(out) == [("recurring", D("7.24"))]


def test_mid_cycle_upgrade(ctx: BillingContext, make_state: StateFactory) -> None:
    """Starter -> pro on 2024-02-10 (upgrade = higher tier -> immediate, pending by policy).

    Period [Feb 1, Mar 1) of 2024 = 29 days; Feb 10 (incl.) to Mar 1 = 20 days.
    Credit for starter: 20/29 x 19.00 = 13.1034 -> -13.10 (from the 19.00 actually charged).
    Charge for pro:     20/29 x 49.00 = 33.7931 ->  33.79.
    Both roll into the Mar 1 invoice: 49.00 + 33.79 - 13.10 = 69.69.
    """
    state = make_state(plan_id="starter", anchor=date(2024, 1, 1))
    _, _, upgrade, renewal = run(
        state,
        ctx,
        Activate(on=date(2024, 1, 1)),
        Renew(on=date(2024, 2, 1)),
        ChangePlan(on=date(2024, 2, 10), plan_id="pro"),
        Renew(on=date(2024, 3, 1)),
    )
    assert upgrade.timing == "immediate" and upgrade.documents == ()
    assert [(line.kind, line.amount) for line in upgrade.new_pending] == [
        ("proration_credit", D("-13.10")),
        ("proration_charge", D("33.79")),
    ]
    credit, charge = upgrade.new_pending
    assert credit.credits_charge_id is not None and charge.charge_id is not None
    assert (charge.service_period_start, charge.service_period_end) == (date(2024, 2, 10), date(2024, 3, 1))
    # Used part of starter (Feb 1-9, 9 days) + credit = what was charged.
    assert D("19.00") - D("13.10") == D("5.90")
    [invoice] = renewal.documents
    # Pending adjustments come first (they are older), then the new period.
    assert amounts(renewal) == [
        ("proration_credit", D("-13.10")),
        ("proration_charge", D("33.79")),
        ("recurring", D("49.00")),
    ]
    assert invoice.total == D("69.69")
    assert renewal.state.pending_adjustments == ()


def test_upgrade_invoiced_immediately_by_pair_rule(ctx: BillingContext, make_state: StateFactory) -> None:
    """Starter -> enterprise has a pair rule `invoice_immediately`: an invoice is issued on the change date.

    Period [Feb 1, Mar 1) 2024 = 29 days, change Feb 15 -> 15 days left.
    Credit 15/29 x 19.00 = 9.8275 -> -9.83; charge 10 seats x 99.00 = 990.00 x 15/29 = 512.068 -> 512.07.
    Invoice total 502.24, due at once (net 0).
    """
    state = make_state(plan_id="starter", anchor=date(2024, 1, 1))
    *_, change = run(
        state,
        ctx,
        Activate(on=date(2024, 1, 1)),
        Renew(on=date(2024, 2, 1)),
        ChangePlan(on=date(2024, 2, 15), plan_id="enterprise", quantity=10),
    )
    [invoice] = change.documents
    assert amounts(change) == [("proration_credit", D("-9.83")), ("proration_charge", D("512.07"))]
    assert invoice.total == D("502.24") and invoice.due_date == date(2024, 2, 15)


def test_downgrade_at_period_end(ctx: BillingContext, make_state: StateFactory) -> None:
    """Pro -> starter on 2024-02-10: downgrade -> end of term: no proration, starter billed from Mar 1."""
    state = make_state(plan_id="pro", anchor=date(2024, 1, 1))
    _, _, down, renewal = run(
        state,
        ctx,
        Activate(on=date(2024, 1, 1)),
        Renew(on=date(2024, 2, 1)),
        ChangePlan(on=date(2024, 2, 10), plan_id="starter"),
        Renew(on=date(2024, 3, 1)),
    )
    assert down.timing == "period_end" and down.effective_on == date(2024, 3, 1)
    assert down.documents == () and down.new_pending == ()
    assert down.state.item("base").plan_id == "pro"
    assert amounts(renewal) == [("recurring", D("19.00"))]
    assert renewal.state.item("base").plan_id == "starter"
    assert renewal.state.scheduled_change is None


def test_downgrade_forced_immediate_by_the_command(ctx: BillingContext, make_state: StateFactory) -> None:
    """Overriding the policy: pro -> starter immediately on Feb 10 2024 (20 of 29 days left).

    Credit 20/29 x 49.00 = -33.79, charge 20/29 x 19.00 = 13.10; net -20.69 pending for the next invoice.
    """
    state = make_state(plan_id="pro", anchor=date(2024, 1, 1))
    *_, down = run(
        state,
        ctx,
        Activate(on=date(2024, 1, 1)),
        Renew(on=date(2024, 2, 1)),
        ChangePlan(on=date(2024, 2, 10), plan_id="starter", timing="immediate"),
    )
    assert [line.amount for line in down.new_pending] == [D("-33.79"), D("13.10")]


def test_quantity_change(ctx: BillingContext, make_state: StateFactory) -> None:
    """Pro x 2 -> x 5 on 2024-04-16. Period [Apr 1, May 1) = 30 days, 15 left.

    Credit 15/30 x (2 x 49.00 = 98.00) = -49.00; charge 15/30 x (5 x 49.00 = 245.00) = 122.50.
    Net +73.50 = 3 seats x 49.00 x 1/2. A decrease is end-of-term by policy.
    """
    state = make_state(quantity=2, anchor=date(2024, 4, 1))
    _, up, down, renewal = run(
        state,
        ctx,
        Activate(on=date(2024, 4, 1)),
        ChangeQuantity(on=date(2024, 4, 16), quantity=5),
        ChangeQuantity(on=date(2024, 4, 20), quantity=3),
        Renew(on=date(2024, 5, 1)),
    )
    assert [(line.kind, line.amount) for line in up.new_pending] == [
        ("proration_credit", D("-49.00")),
        ("proration_charge", D("122.50")),
    ]
    assert sum(line.amount for line in up.new_pending) == D("73.50")
    assert down.timing == "period_end" and down.new_pending == ()
    # May 1: 3 seats x 49.00 = 147.00, plus the April adjustments.
    assert amounts(renewal) == [
        ("proration_credit", D("-49.00")),
        ("proration_charge", D("122.50")),
        ("recurring", D("147.00")),
    ]


def test_addon_added_and_removed(ctx: BillingContext, make_state: StateFactory) -> None:
    """Extra storage (10.00/month) added 2024-04-11: 20/30 x 10.00 = 6.67 pending.

    Its removal waits for the end of the term (policy).
    """
    state = make_state(anchor=date(2024, 4, 1))
    _, add, remove, renewal = run(
        state,
        ctx,
        Activate(on=date(2024, 4, 1)),
        AddAddon(on=date(2024, 4, 11), plan_id="extra-storage"),
        RemoveAddon(on=date(2024, 4, 20), item_id="extra-storage"),
        Renew(on=date(2024, 5, 1)),
    )
    assert [(line.kind, line.amount) for line in add.new_pending] == [("proration_charge", D("6.67"))]
    assert remove.timing == "period_end"
    assert amounts(renewal) == [("proration_charge", D("6.67")), ("recurring", D("49.00"))]


def test_immediate_cancellation_with_credit(ctx: BillingContext, make_state: StateFactory) -> None:
    """Pro EUR 45.00/month, German customer (19% VAT), cancelled at once on 2024-04-21.

    Period [Apr 1, May 1) = 30 days; Apr 21 (the cancellation day is not charged) to May 1 = 10 days.
    Credit 10/30 x 45.00 = 15.00; VAT 15.00 x 0.19 = 2.85; credit note total -17.85, kept as account credit.
    The next invoice elsewhere can use the 17.85.
    """
    state = make_state(currency="EUR", country="DE", anchor=date(2024, 4, 1))
    first, cancel = run(
        state, ctx, Activate(on=date(2024, 4, 1)), Cancel(on=date(2024, 4, 21), timing="immediate")
    )
    assert first.documents[0].total == D("53.55")  # 45.00 + 8.55 VAT
    [note] = cancel.documents
    assert note.document_type == "credit_note"
    assert [(line.kind, line.amount, line.tax_amount) for line in note.lines] == [
        ("proration_credit", D("-15.00"), D("-2.85"))
    ]
    assert note.total == D("-17.85") and note.amount_due == 0
    assert note.credit_to_account == D("17.85") and note.refund_amount == 0
    assert cancel.account_credit_after == D("17.85")
    assert cancel.state.cancelled_on == date(2024, 4, 21)
    with pytest.raises(BillingError):
        apply(cancel.state, Renew(on=date(2024, 5, 1)), ctx)


def test_immediate_cancellation_refund_and_no_credit(ctx: BillingContext, make_state: StateFactory) -> None:
    """Same cancellation with `credit: refund` pays back 15.00 (US, no tax: 10/30 x 45.00).

    With `credit: none` nothing is credited.
    """
    state = make_state(currency="EUR", anchor=date(2024, 4, 1))
    _, refund = run(
        state,
        ctx,
        Activate(on=date(2024, 4, 1)),
        Cancel(on=date(2024, 4, 21), timing="immediate", credit="refund"),
    )
    assert refund.documents[0].refund_amount == D("15.00")
    assert refund.account_credit_after == 0
    _, nothing = run(
        state,
        ctx,
        Activate(on=date(2024, 4, 1)),
        Cancel(on=date(2024, 4, 21), timing="immediate", credit="none"),
    )
    assert nothing.documents == ()


def test_cancellation_on_the_period_start_credits_the_whole_period(
    ctx: BillingContext, make_state: StateFactory
) -> None:
    """Cancelled the same day it was charged: half-open periods -> 30/30 credited, nothing charged."""
    state = make_state(anchor=date(2024, 4, 1))
    _, cancel = run(
        state, ctx, Activate(on=date(2024, 4, 1)), Cancel(on=date(2024, 4, 1), timing="immediate")
    )
    assert amounts(cancel) == [("proration_credit", D("-49.00"))]


def test_period_end_cancellation(ctx: BillingContext, make_state: StateFactory) -> None:
    """Default cancellation is end of term: no credit; the renewal on May 1 bills nothing and ends it.

    Pending adjustments still outstanding at that point are invoiced on the final date.
    """
    state = make_state(anchor=date(2024, 4, 1))
    _, oneoff, cancel, end = run(
        state,
        ctx,
        Activate(on=date(2024, 4, 1)),
        AddOneOff(on=date(2024, 4, 5), description="Onboarding workshop", unit_amount=D("150.00")),
        Cancel(on=date(2024, 4, 10)),
        Renew(on=date(2024, 5, 1)),
    )
    assert oneoff.documents == ()
    assert cancel.timing == "period_end" and cancel.effective_on == date(2024, 5, 1)
    assert cancel.documents == ()
    assert amounts(end) == [("one_off", D("150.00"))]
    assert end.state.cancelled_on == date(2024, 5, 1)


def test_pause_and_resume(ctx: BillingContext, make_state: StateFactory) -> None:
    """Pro 49.00/month anchored on the 1st (2025, not a leap year). Paused Feb 15, resumed Apr 11.

    Feb 1: 49.00 for [Feb 1, Mar 1) = 28 days.
    Feb 15 pause: credit the paid, unused days Feb 15..28 = 14/28 x 49.00 = -24.50, on a credit
    note at once: the customer's balance shows 24.50 while paused (issue 11, item 9).
    Mar 1 and Apr 1: paused, nothing billed.
    Apr 11 resume: [Apr 1, May 1) = 30 days, 20 left: 20/30 x 49.00 = 32.6667 -> 32.67,
    invoiced at once, paid by the balance: 32.67 - 24.50 = 8.17 due.
    May 1: the cycle continues on its anchor: 49.00.
    Net billed per period = its unpaused days: Feb 14/28 (24.50), Mar 0, Apr 20/30 (32.67).
    """
    state = make_state(anchor=date(2025, 1, 1))
    outs = run(
        state,
        ctx,
        Activate(on=date(2025, 1, 1)),
        Renew(on=date(2025, 2, 1)),
        Pause(on=date(2025, 2, 15)),
        Renew(on=date(2025, 3, 1)),
        Renew(on=date(2025, 4, 1)),
        Resume(on=date(2025, 4, 11)),
        Renew(on=date(2025, 5, 1)),
    )
    _, feb, pause, mar, apr, resume, may = outs
    assert amounts(feb) == [("recurring", D("49.00"))]
    assert amounts(pause) == [("proration_credit", D("-24.50"))]
    assert pause.documents[0].document_type == "credit_note" and pause.account_credit_after == D("24.50")
    assert mar.documents == () and apr.documents == ()
    assert amounts(resume) == [("proration_charge", D("32.67"))]
    assert resume.documents[0].amount_due == D("8.17")
    assert amounts(may) == [("recurring", D("49.00"))]
    [pause_interval] = resume.state.pauses
    assert (pause_interval.start, pause_interval.end) == (date(2025, 2, 15), date(2025, 4, 11))
    # The pure calendar function agrees on which days are billable.
    windows = billable_service_windows(
        date(2025, 2, 1),
        date(2025, 5, 1),
        billing_anchor=date(2025, 1, 1),
        interval="P1M",
        pauses=[(date(2025, 2, 15), date(2025, 4, 11))],
    )
    assert [(w.service_start, w.service_end, str(w.fraction)) for w in windows] == [
        (date(2025, 2, 1), date(2025, 2, 15), "14/28"),
        (date(2025, 4, 11), date(2025, 5, 1), "20/30"),
    ]


def test_pause_without_crediting_paused_days(ctx: BillingContext, make_state: StateFactory) -> None:
    """Policy `credit_paused_days: false`: nothing credited; resuming inside the paid period charges nothing;
    resuming in a later period charges the rest of that period."""
    policy = ctx.policy.model_copy(
        update={"pause": ctx.policy.pause.model_copy(update={"credit_paused_days": False})}
    )
    no_credit = replace(ctx, policy=policy)
    state = make_state(anchor=date(2025, 1, 1))
    _, pause, same = run(
        state,
        no_credit,
        Activate(on=date(2025, 1, 1)),
        Pause(on=date(2025, 1, 10)),
        Resume(on=date(2025, 1, 20)),
    )
    assert pause.new_pending == () and same.documents == ()
    _, _, _, later = run(
        state,
        no_credit,
        Activate(on=date(2025, 1, 1)),
        Pause(on=date(2025, 1, 10)),
        Renew(on=date(2025, 2, 1)),
        Resume(on=date(2025, 2, 15)),
    )
    assert amounts(later) == [("proration_charge", D("24.50"))]  # 14/28 x 49.00


def test_yearly_plan_over_a_leap_year(ctx: BillingContext, make_state: StateFactory) -> None:
    """Pro yearly 490.00 from 2024-01-01: the period [2024-01-01, 2025-01-01) has 366 days.

    Upgrade to enterprise yearly (990.00) on 2024-07-01: Jul 1 to Jan 1 = 184 days.
    Credit 184/366 x 490.00 = 246.3388 -> -246.34; charge 184/366 x 990.00 = 497.7049 -> 497.70.
    (A 365-day year would give 247.01 and 499.07.)
    """
    state = make_state(interval="P1Y", anchor=date(2024, 1, 1))
    _, up = run(
        state,
        ctx,
        Activate(on=date(2024, 1, 1)),
        ChangePlan(on=date(2024, 7, 1), plan_id="enterprise", quantity=1),
    )
    assert [(line.kind, line.amount) for line in up.new_pending] == [
        ("proration_credit", D("-246.34")),
        ("proration_charge", D("497.70")),
    ]


def test_jpy_zero_digits_and_tax_rounding(ctx: BillingContext, make_state: StateFactory) -> None:
    """Starter JPY 2900/month, Japanese customer (10%), start 2024-01-22 with the anchor on the 1st.

    Period [Jan 1, Feb 1) = 31 days; 10 days: 2900 x 10/31 = 935.48 -> 935 yen.
    Tax 935 x 0.10 = 93.5 -> 94 (half-up, whole yen). Total 1029.
    """
    state = make_state(
        plan_id="starter", currency="JPY", country="JP", anchor=date(2024, 2, 1), started_on=date(2024, 1, 22)
    )
    [out] = run(state, ctx, Activate(on=date(2024, 1, 22)))
    [invoice] = out.documents
    assert (invoice.subtotal, invoice.tax, invoice.total) == (D("935"), D("94"), D("1029"))
    assert str(invoice.total) == "1029"


def test_bhd_three_digits(ctx: BillingContext, make_state: StateFactory) -> None:
    """Pro BHD 18.500/month, Bahraini customer (10% VAT), cancelled at once on 2024-01-22.

    Jan 1 invoice: 18.500 + 1.850 = 20.350.
    Credit [Jan 22, Feb 1) = 10/31 x 18.500 = 5.96774 -> -5.968; VAT -0.5968 -> -0.597; total -6.565.
    """
    state = make_state(currency="BHD", country="BH", anchor=date(2024, 1, 1))
    first, cancel = run(
        state, ctx, Activate(on=date(2024, 1, 1)), Cancel(on=date(2024, 1, 22), timing="immediate")
    )
    assert first.documents[0].total == D("20.350")
    [note] = cancel.documents
    assert (note.subtotal, note.tax, note.total) == (D("-5.968"), D("-0.597"), D("-6.565"))


def test_anchored_on_jan_31(ctx: BillingContext, make_state: StateFactory) -> None:
    """Anchored on 2024-01-31: renewals on Feb 29 (leap year), Mar 31, Apr 30 - never drifting to the 29th.

    A change on Mar 1 2024 falls in [Feb 29, Mar 31) = 31 days, 30 left: 30/31 x 49.00 = 47.42 credit.
    """
    state = make_state(anchor=date(2024, 1, 31))
    outs = run(
        state,
        ctx,
        Activate(on=date(2024, 1, 31)),
        Renew(on=date(2024, 2, 29)),
        Renew(on=date(2024, 3, 31)),
        Renew(on=date(2024, 4, 30)),
    )
    periods = [
        (line.service_period_start, line.service_period_end)
        for o in outs
        for d in o.documents
        for line in d.lines
    ]
    assert periods == [
        (date(2024, 1, 31), date(2024, 2, 29)),
        (date(2024, 2, 29), date(2024, 3, 31)),
        (date(2024, 3, 31), date(2024, 4, 30)),
        (date(2024, 4, 30), date(2024, 5, 31)),
    ]
    with pytest.raises(BillingError, match="not a period boundary"):
        apply(outs[0].state, Renew(on=date(2024, 3, 1)), ctx)
    _, _, cancel = run(
        state,
        ctx,
        Activate(on=date(2024, 1, 31)),
        Renew(on=date(2024, 2, 29)),
        Cancel(on=date(2024, 3, 1), timing="immediate"),
    )
    assert amounts(cancel) == [("proration_credit", D("-47.42"))]


def test_grandfathered_and_current_price_versions(ctx: BillingContext, make_state: StateFactory) -> None:
    """Pro USD is 49.00 until 2026-12-31 and 59.00 from 2027-01-01.

    Grandfathered (the catalog's rule): a subscription started 2026-06-01 renews at 49.00 in 2027.
    Current: the renewal on 2027-01-01 bills the version in force that day, 59.00.
    """
    state = make_state(anchor=date(2026, 6, 1))
    renewals = [Renew(on=date(2026, m, 1)) for m in range(7, 13)]
    cmds: list[BillingCommand] = [Activate(on=date(2026, 6, 1)), *renewals, Renew(on=date(2027, 1, 1))]
    assert amounts(run(state, ctx, *cmds)[-1]) == [("recurring", D("49.00"))]
    current = replace(ctx, catalog=ctx.catalog.model_copy(update={"renewal_pricing": "current"}))
    assert amounts(run(state, current, *cmds)[-1]) == [("recurring", D("59.00"))]


def test_price_override_and_payment_terms(ctx: BillingContext, make_state: StateFactory) -> None:
    """Enterprise contract: 80.00 per seat (override), 25 seats, net 30 -> due 30 days after issue."""
    state = make_state(
        plan_id="enterprise",
        quantity=25,
        unit_amount=D("80.00"),
        payment_terms_days=30,
        anchor=date(2024, 5, 1),
    )
    [out] = run(state, ctx, Activate(on=date(2024, 5, 1)))
    [invoice] = out.documents
    assert invoice.total == D("2000.00") and invoice.due_date == date(2024, 5, 31)


def test_one_off_and_setup_credit_lines(ctx: BillingContext, make_state: StateFactory) -> None:
    """A one-off charge (3 x 50.00) and a setup credit (20.00) are lines of their own on the next invoice."""
    state = make_state(anchor=date(2024, 5, 1))
    *_, renewal = run(
        state,
        ctx,
        Activate(on=date(2024, 5, 1)),
        AddOneOff(on=date(2024, 5, 3), description="Data import", unit_amount=D("50.00"), quantity=3),
        AddSetupCredit(on=date(2024, 5, 3), description="Setup waived", amount=D("20.00")),
        Renew(on=date(2024, 6, 1)),
    )
    assert amounts(renewal) == [
        ("one_off", D("150.00")),
        ("setup_credit", D("-20.00")),
        ("recurring", D("49.00")),
    ]
    assert renewal.documents[0].total == D("179.00")
    [now] = run(
        state,
        ctx,
        AddOneOff(
            on=date(2024, 5, 3), description="Rush", unit_amount=D("10.00"), invoicing="invoice_immediately"
        ),
    )
    assert now.documents[0].lines[0].service_period_start is None


def test_account_credit_is_applied_to_later_invoices(ctx: BillingContext, make_state: StateFactory) -> None:
    """A customer with 60.00 of account credit: the 49.00 invoice is fully covered, 11.00 carries over,
    the next 49.00 invoice uses the 11.00 and 38.00 is due."""
    state = make_state(anchor=date(2024, 5, 1))
    first, second = run(
        state, ctx, Activate(on=date(2024, 5, 1)), Renew(on=date(2024, 6, 1)), credit=D("60.00")
    )
    assert (first.documents[0].credits_applied, first.documents[0].amount_due) == (D("49.00"), D("0.00"))
    assert first.account_credit_after == D("11.00")
    assert (second.documents[0].credits_applied, second.documents[0].amount_due) == (D("11.00"), D("38.00"))
    assert second.account_credit_after == 0


def test_tax_exempt_and_region_rates(ctx: BillingContext, make_state: StateFactory) -> None:
    """US-CA 7.25%: 49.00 x 0.0725 = 3.5525 -> 3.55; US-NY 4%: 1.96; tax-exempt: 0."""
    for region, tax in (("US-CA", D("3.55")), ("NY", D("1.96"))):
        [out] = run(make_state(region=region, anchor=date(2024, 5, 1)), ctx, Activate(on=date(2024, 5, 1)))
        assert out.documents[0].tax == tax
    [out] = run(
        make_state(country="DE", tax_exempt=True, anchor=date(2024, 5, 1)), ctx, Activate(on=date(2024, 5, 1))
    )
    assert out.documents[0].tax == 0


def test_interval_change_restarts_the_cycle(ctx: BillingContext, make_state: StateFactory) -> None:
    """Pro monthly -> pro yearly on 2024-04-16 (sidegrade, immediate): the new cycle is anchored on Apr 16.

    Credit 15/30 x 49.00 = -24.50; charge a full year [2024-04-16, 2025-04-16) = 490.00. The new
    period is billed in advance from the change day, so the change is invoiced at once (465.50), not
    parked for the renewal a year later.
    """
    state = make_state(anchor=date(2024, 4, 1))
    _, change = run(
        state,
        ctx,
        Activate(on=date(2024, 4, 1)),
        ChangePlan(on=date(2024, 4, 16), plan_id="pro", billing_interval="P1Y"),
    )
    assert amounts(change) == [("proration_credit", D("-24.50")), ("recurring", D("490.00"))]
    assert change.documents[0].total == D("465.50") and change.new_pending == ()
    assert change.state.billing_anchor == date(2024, 4, 16)
    assert change.state.charged_through == date(2025, 4, 16)
    [renewal] = run(change.state, ctx, Renew(on=date(2025, 4, 16)))
    assert amounts(renewal) == [("recurring", D("490.00"))]


def test_two_changes_in_one_period_credit_what_was_actually_charged(
    ctx: BillingContext, make_state: StateFactory
) -> None:
    """Starter -> pro on Apr 11, pro -> enterprise on Apr 21 (period [Apr 1, May 1), 30 days).

    Apr 11: credit 20/30 x 19.00 = -12.67; charge pro 20/30 x 49.00 = 32.67 for [Apr 11, May 1).
    Apr 21: the pro charge is credited from its own amount and period: 10/20 x 32.67 = 16.335 -> -16.34;
            starter was already credited from Apr 11 -> nothing more; enterprise 10/30 x 99.00 = 33.00.
    """
    state = make_state(plan_id="starter", anchor=date(2024, 4, 1))
    _, first, second = run(
        state,
        ctx,
        Activate(on=date(2024, 4, 1)),
        ChangePlan(on=date(2024, 4, 11), plan_id="pro"),
        ChangePlan(on=date(2024, 4, 21), plan_id="enterprise", quantity=1),
    )
    assert [line.amount for line in first.new_pending] == [D("-12.67"), D("32.67")]
    assert [line.amount for line in second.new_pending] == [D("-16.34"), D("33.00")]


def test_changes_before_the_period_is_charged_do_not_prorate(
    ctx: BillingContext, make_state: StateFactory
) -> None:
    """Before activation (e.g. during a trial) a change just updates the items: the trial is free."""
    state = make_state(plan_id="starter", anchor=date(2024, 4, 1))
    change, first = run(
        state, ctx, ChangePlan(on=date(2024, 3, 20), plan_id="pro"), Activate(on=date(2024, 4, 1))
    )
    assert change.documents == () and change.new_pending == ()
    assert amounts(first) == [("recurring", D("49.00"))]


def test_invoice_pending_and_errors(ctx: BillingContext, make_state: StateFactory) -> None:
    state = make_state(anchor=date(2024, 4, 1))
    active = apply(state, Activate(on=date(2024, 4, 1)), ctx).state
    with pytest.raises(BillingError):
        apply(active, Activate(on=date(2024, 4, 1)), ctx)
    with pytest.raises(BillingError, match="already billed"):
        apply(active, Renew(on=date(2024, 4, 1)), ctx)
    with pytest.raises(BillingError):
        apply(active, ChangeQuantity(on=date(2024, 4, 5), quantity=1), ctx)
    with pytest.raises(BillingError):
        apply(active, Resume(on=date(2024, 4, 5)), ctx)
    with pytest.raises(BillingError):
        apply(active, RemoveAddon(on=date(2024, 4, 5), item_id="base"), ctx)
    with pytest.raises(BillingError):
        apply(active, AddAddon(on=date(2024, 4, 5), plan_id="pro"), ctx)
    assert apply(active, InvoicePending(on=date(2024, 4, 5)), ctx).documents == ()
    with_pending = apply(active, ChangeQuantity(on=date(2024, 4, 16), quantity=2), ctx).state
    [invoice] = apply(with_pending, InvoicePending(on=date(2024, 4, 16)), ctx).documents
    assert invoice.total == D("24.50")  # -24.50 + 49.00 (15/30 of 1 and of 2 seats)


def test_preview_equals_apply(ctx: BillingContext, make_state: StateFactory) -> None:
    """Preview is the same code path: identical outcome for identical inputs."""
    state = make_state(plan_id="starter", anchor=date(2024, 4, 1))
    active = apply(state, Activate(on=date(2024, 4, 1)), ctx).state
    cmd = ChangePlan(on=date(2024, 4, 11), plan_id="enterprise", quantity=10)
    credit = D("5.00")
    assert preview(active, cmd, ctx, account_credit=credit) == apply(active, cmd, ctx, account_credit=credit)


def test_state_from_lifecycle_snapshot(ctx: BillingContext) -> None:
    snap = ev.SubscriptionSnapshot(
        subscription_id="s-9",
        status="active",
        channel="web",
        customer=ev.Customer(customer_id="c-1", country="FR"),
        plan_id="pro",
        quantity=2,
        billing_interval="P1M",
        currency="EUR",
        addons=[ev.SubscriptionItem(plan_id="extra-storage", quantity=1)],
        billing_anchor=date(2024, 4, 1),
        payment_terms_days=30,
    )
    state = state_from_snapshot(snap, started_on=date(2024, 4, 1))
    assert [i.item_id for i in state.items] == ["base", "extra-storage"]
    [out] = run(state, ctx, Activate(on=date(2024, 4, 1)))
    invoice = out.documents[0]
    # 2 x 45.00 + 9.00 = 99.00; FR 20% per line: 18.00 + 1.80 = 19.80.
    assert (invoice.subtotal, invoice.tax, invoice.total) == (D("99.00"), D("19.80"), D("118.80"))
    assert invoice.due_date == date(2024, 5, 1)
    assert BillingState.model_validate_json(out.state.model_dump_json()) == out.state
    assert isinstance(state.items[0], Item)


def test_inputs_are_validated(make_state: StateFactory) -> None:
    """Overrides must be exact in the currency; quantities are at least 1."""
    with pytest.raises(ValidationError):
        make_state(currency="JPY", unit_amount=D("10.5"))
    with pytest.raises(ValidationError):
        ChangePlan(on=date(2024, 1, 1), plan_id="pro", quantity=0)


def test_negative_one_off_is_refused(ctx: BillingContext, make_state: StateFactory) -> None:
    with pytest.raises(BillingError):
        apply(make_state(), AddOneOff(on=date(2024, 1, 1), description="x", unit_amount=D("-1.00")), ctx)
