"""The customer credit ledger, as the pure engine sees it: one balance shared by several subscriptions.

Property: the balance never goes negative, and every decrease is credit applied to an invoice
(a receivable it pays); every increase is a credit note settled to account credit.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.billing.domain import (
    Activate,
    BillingContext,
    BillingError,
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
)
from services.billing.domain.engine import BillingCommand
from shared.contracts.commands import Timing

D = Decimal


def _state(sub: str, unit: str, anchor: date) -> BillingState:
    return new_billing_state(
        subscription_id=sub,
        currency="USD",
        billing_interval="P1M",
        billing_anchor=anchor,
        items=[Item(item_id="base", plan_id="pro", quantity=2, unit_amount=D(unit), price_date=anchor)],
        tax_profile=TaxProfile(country="US", region="US-CA"),
    )


ACTIONS = st.sampled_from(["down", "up", "qty_down", "qty_up", "pause", "resume", "cancel", "renew", "wait"])


@given(
    anchors=st.tuples(
        st.dates(date(2024, 1, 1), date(2026, 12, 31)), st.dates(date(2024, 1, 1), date(2026, 12, 31))
    ),
    units=st.tuples(st.integers(100, 100_000), st.integers(100, 100_000)),
    steps=st.lists(st.tuples(st.integers(0, 1), ACTIONS, st.integers(0, 20)), max_size=25),
)
def test_ledger_never_negative_without_a_receivable(
    ctx: BillingContext,
    anchors: tuple[date, date],
    units: tuple[int, int],
    steps: list[tuple[int, str, int]],
) -> None:
    states = [
        _state(f"s{i}", str(D(u) / 100), a) for i, (a, u) in enumerate(zip(anchors, units, strict=True))
    ]
    balance = D(0)
    today = max(anchors)
    for i in (0, 1):
        out = apply(states[i], Activate(on=anchors[i]), ctx, account_credit=balance)
        states[i], balance = out.state, out.account_credit_after
    for who, action, gap in steps:
        today += timedelta(days=gap)
        s = states[who]
        cmd: BillingCommand | None = None
        if s.cancelled_on is None and s.charged_through is not None and s.charged_through <= today:
            cmd = Renew(on=s.charged_through)
        elif action == "down":
            cmd = ChangePlan(
                on=today,
                plan_id="starter",
                unit_amount=D("1.00"),
                timing=Timing.IMMEDIATE,
                invoicing="invoice_immediately",
            )
        elif action == "up":
            cmd = ChangePlan(on=today, plan_id="enterprise", unit_amount=D("999.00"), timing=Timing.IMMEDIATE)
        elif action in ("qty_down", "qty_up"):
            q = 1 if action == "qty_down" else 5
            cmd = ChangeQuantity(
                on=today, quantity=q, timing=Timing.IMMEDIATE, invoicing="invoice_immediately"
            )
        elif action == "pause":
            cmd = Pause(on=today)
        elif action == "resume":
            cmd = Resume(on=today)
        elif action == "cancel":
            cmd = Cancel(on=today, timing=Timing.IMMEDIATE)
        if cmd is None:
            continue
        try:
            out = apply(s, cmd, ctx, account_credit=balance)
        except BillingError:
            continue
        running = balance
        for doc in out.documents:
            if doc.document_type == "credit_note":
                assert all(line.amount <= 0 for line in doc.lines)  # never a charge in a credit note
                running += doc.credit_to_account
            else:
                # A decrease of the balance is always credit applied to an invoice's receivable.
                assert doc.credits_applied <= doc.total
                running -= doc.credits_applied
            assert running >= 0
        assert running == out.account_credit_after >= 0
        states[who], balance = out.state, out.account_credit_after
