"""The billing worker's pure parts: lifecycle events -> billing steps, alignment, journal timers, previews."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from services.billing.app import billing_context
from services.billing.domain import (
    Activate,
    AddAddon,
    BillingContext,
    Cancel,
    ChangePlan,
    ChangeQuantity,
    Pause,
    RemoveAddon,
    Renew,
    Resume,
    TaxProfile,
    apply,
    state_from_snapshot,
)
from services.billing.domain.tax import TaxError, load_tax_table
from services.billing.journal import ISSUE_KIND, RECOGNITION_KIND, entries_for
from services.billing.lifecycle_map import (
    Align,
    Run,
    Start,
    align,
    is_live,
    steps_for,
)
from services.billing.preview import PreviewError, command_for
from shared.catalog import load_catalog
from shared.contracts import events as ev
from shared.contracts.subscription import SubscriptionEvent

D = Decimal
AT = datetime(2025, 3, 11, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def wctx() -> BillingContext:
    return billing_context(load_catalog())


_LIFECYCLE_EVENT: TypeAdapter[SubscriptionEvent] = TypeAdapter(SubscriptionEvent)
_COMMON = {
    "subscription_id": "sub-1",
    "command": "renew",
    "idempotency_key": "k-1",
    "from_status": "active",
    "to_status": "active",
    "effective_at": AT,
    "actor": "system",
}
_PERIOD = {"period_start": "2025-03-01", "period_end": "2025-04-01"}
_ENDED = {"ended_at": AT, "grace_period_ends_at": AT}
_PLAN = {
    "from_plan_id": "starter",
    "from_tier": 1,
    "to_plan_id": "pro",
    "to_tier": 2,
    "direction": "upgrade",
    "from_quantity": 2,
    "to_quantity": 2,
}
# What each event type needs besides the common fields, so a test names only what it is about.
_REQUIRED: dict[str, dict[str, Any]] = {
    "SubscriptionCreated": {
        "plan_id": "pro",
        "tier": 2,
        "quantity": 1,
        "billing_interval": "P1M",
        "approval_mode": "auto",
        "trial_days": 0,
    },
    "SubscriptionActivated": _PERIOD,
    "TrialConverted": _PERIOD,
    "SubscriptionRenewed": {**_PERIOD, "plan_id": "pro", "quantity": 1},
    "SubscriptionResumed": {**_PERIOD, "paused_at": AT},
    "SubscriptionReactivated": {**_PERIOD, "new_billing_anchor": False},
    "PlanChanged": {**_PLAN, "timing": "immediate", **_PERIOD},
    "PlanChangeScheduled": {**_PLAN, "effective_on": "2025-04-01"},
    "QuantityChanged": {"plan_id": "pro", "from_quantity": 2, "to_quantity": 5},
    "AddOnAdded": {"addon_plan_id": "extra-storage", "quantity": 1},
    "AddOnRemoved": {"addon_plan_id": "extra-storage", "quantity": 1},
    "SubscriptionPaused": {"resume_on": None},
    "CancellationScheduled": {"effective_on": "2025-04-01"},
    "SubscriptionCancelled": {"timing": "immediate", **_ENDED},
    "SubscriptionExpired": _ENDED,
    "SubscriptionTerminated": _ENDED,
}


def event(type_: str, **fields: Any) -> Any:
    """A lifecycle event of the shared contract, validated as billing receives it."""
    return _LIFECYCLE_EVENT.validate_python({**_COMMON, **_REQUIRED.get(type_, {}), "type": type_, **fields})


def snapshot(**changes: Any) -> ev.SubscriptionSnapshot:
    base: dict[str, Any] = {
        "subscription_id": "sub-1",
        "status": "active",
        "channel": "direct",
        "customer": {"customer_id": "c1", "region": "eu"},
        "plan_id": "starter",
        "quantity": 2,
        "billing_interval": "P1M",
        "currency": "USD",
        "billing_anchor": date(2025, 1, 1),
        "current_period_start": date(2025, 3, 1),
        "current_period_end": date(2025, 4, 1),
    }
    return ev.SubscriptionSnapshot.model_validate({**base, **changes})


def test_each_lifecycle_event_maps_to_its_billing_step() -> None:
    day = date(2025, 3, 11)
    assert steps_for(event("SubscriptionActivated", period_start="2025-03-01")) == [Start(date(2025, 3, 1))]
    assert steps_for(event("SubscriptionRenewed", period_start="2025-04-01")) == [
        Align(date(2025, 4, 1)),
        Run(Renew(on=date(2025, 4, 1)), "renewal"),
    ]
    assert steps_for(event("PlanChanged", timing="immediate", to_plan_id="pro", to_quantity=2)) == [
        Run(ChangePlan(on=day, plan_id="pro", quantity=2, timing="immediate"), "change")
    ]
    assert steps_for(event("PlanChanged", timing="period_end", to_plan_id="starter")) == []
    assert steps_for(event("QuantityChanged", to_quantity=5)) == [
        Run(ChangeQuantity(on=day, quantity=5), "change")
    ]
    # a seat change the lifecycle applied at a period boundary: the renewal's Align carries it
    assert steps_for(event("QuantityChanged", to_quantity=5, timing="period_end")) == []
    assert steps_for(event("AddOnAdded", addon_plan_id="extra-storage", quantity=2)) == [
        Run(AddAddon(on=day, plan_id="extra-storage", quantity=2), "change")
    ]
    assert steps_for(event("AddOnRemoved", addon_plan_id="extra-storage", quantity=2)) == [
        Run(RemoveAddon(on=day, item_id="extra-storage"), "change")
    ]
    assert steps_for(event("SubscriptionPaused")) == [Run(Pause(on=day), "pause")]
    assert steps_for(event("SubscriptionResumed", period_start="2025-03-01")) == [
        Align(day),
        Run(Resume(on=day), "resume"),
    ]
    assert steps_for(event("SubscriptionCancelled", timing="immediate", ended_at=AT)) == [
        Run(Cancel(on=day, timing="immediate"), "cancellation")
    ]
    assert steps_for(event("SubscriptionTerminated", ended_at=AT)) == [
        Run(Cancel(on=day, timing="immediate", credit="none"), "cancellation")
    ]
    assert (
        steps_for(event("SubscriptionReactivated", period_start="2025-03-01", new_billing_anchor=False)) == []
    )
    assert steps_for(
        event("SubscriptionReactivated", period_start="2025-03-11", new_billing_anchor=True)
    ) == [Start(day)]
    for silent in (
        "SubscriptionCreated",
        "TrialConverted",
        "PlanChangeScheduled",
        "CancellationScheduled",
        "SubscriptionPastDue",
        "PaymentRecovered",
        "SubscriptionSuspended",
    ):
        assert steps_for(event(silent)) == []


def test_issue11_fields_reach_billing() -> None:
    """``invoice: now|next``, a new interval and a backdated start travel from the lifecycle's events."""
    day = date(2025, 3, 11)
    assert steps_for(
        event(
            "PlanChanged",
            timing="immediate",
            to_plan_id="pro",
            to_quantity=2,
            invoice="now",
            billing_interval="P1Y",
        )
    ) == [
        Run(
            ChangePlan(
                on=day,
                plan_id="pro",
                quantity=2,
                timing="immediate",
                invoicing="invoice_immediately",
                billing_interval="P1Y",
            ),
            "change",
        )
    ]
    # A seat change that says when to invoice is prorated now, a decrease too (Chargebee).
    assert steps_for(event("QuantityChanged", to_quantity=1, invoice="next")) == [
        Run(ChangeQuantity(on=day, quantity=1, timing="immediate", invoicing="pending"), "change")
    ]
    assert steps_for(
        event("SubscriptionActivated", period_start="2025-01-01", billed_through="2025-02-14")
    ) == [Start(date(2025, 1, 1), date(2025, 2, 14))]


def test_effective_dates_are_utc_business_days() -> None:
    late = event("SubscriptionPaused", effective_at="2025-03-11T23:30:00-05:00")
    assert steps_for(late) == [Run(Pause(on=date(2025, 3, 12)), "pause")]


def test_change_events_are_read_from_the_contract() -> None:
    events = [
        event("PlanChanged", timing="period_end", to_plan_id="starter"),
        event("SubscriptionRenewed", period_start="2025-04-01"),
    ]
    change = ev.SubscriptionStateChanged(
        subscription_id="sub-1",
        version=3,
        command="renew",
        from_status="active",
        to_status="active",
        effective_at=AT,
        actor="system",
        snapshot=snapshot(),
        events=events,
    )
    again = ev.SubscriptionStateChanged.model_validate_json(change.model_dump_json())
    assert [type(e).__name__ for e in again.events] == ["PlanChanged", "SubscriptionRenewed"]
    assert again.events == events
    # an event the contract does not know is refused, not skipped
    bad = change.model_dump(mode="json")
    bad["events"][0]["type"] = "PlanChangd"
    with pytest.raises(ValidationError):
        ev.SubscriptionStateChanged.model_validate(bad)


def test_renewal_aligns_items_with_a_plan_change_the_lifecycle_applied_at_the_period_end(
    wctx: BillingContext,
) -> None:
    state = state_from_snapshot(snapshot(plan_id="pro"), started_on=date(2025, 1, 1))
    state = apply(state, Activate(on=date(2025, 3, 1)), wctx).state
    aligned, note = align(state, snapshot(plan_id="starter"), date(2025, 4, 1))
    assert note and aligned.scheduled_change is not None
    renewal = apply(aligned, Renew(on=date(2025, 4, 1)), wctx)
    (doc,) = renewal.documents
    assert [(ln.plan_id, ln.amount) for ln in doc.lines] == [("starter", D("38.00"))]
    same, none = align(renewal.state, snapshot(plan_id="starter"), date(2025, 5, 1))
    assert none is None and same == renewal.state


def test_billing_own_period_end_change_agrees_with_the_lifecycle(wctx: BillingContext) -> None:
    state = apply(
        state_from_snapshot(snapshot(quantity=3), started_on=date(2025, 1, 1)),
        Activate(on=date(2025, 3, 1)),
        wctx,
    ).state
    decreased = apply(
        state, ChangeQuantity(on=date(2025, 3, 11), quantity=2), wctx
    )  # policy: at the term end
    assert decreased.documents == () and decreased.state.scheduled_change is not None
    aligned, note = align(decreased.state, snapshot(quantity=2), date(2025, 4, 1))
    assert note is None and aligned == decreased.state


def test_resume_aligns_a_paused_state_directly(wctx: BillingContext) -> None:
    state = apply(
        state_from_snapshot(snapshot(plan_id="pro"), started_on=date(2025, 1, 1)),
        Activate(on=date(2025, 3, 1)),
        wctx,
    ).state
    paused = apply(state, Pause(on=date(2025, 3, 11)), wctx).state
    aligned, note = align(paused, snapshot(plan_id="starter"), date(2025, 5, 10))
    assert note and [i.plan_id for i in aligned.items] == ["starter"]
    resumed = apply(aligned, Resume(on=date(2025, 5, 10)), wctx)
    # The pause credit outweighs the charge: a credit note for it, an invoice for the charge.
    assert any(
        ln.plan_id == "starter" and ln.kind == "proration_charge" for d in resumed.documents for ln in d.lines
    )


def test_is_live() -> None:
    state = state_from_snapshot(snapshot(), started_on=date(2025, 1, 1))
    assert not is_live(None) and not is_live(state)


def test_a_customer_without_country_is_untaxed_in_the_worker_but_an_unknown_country_stays_loud(
    wctx: BillingContext,
) -> None:
    assert wctx.tax_table.rate_for(TaxProfile(), date(2025, 3, 1)) == 0
    assert wctx.tax_table.rate_for(TaxProfile(country="DE"), date(2025, 3, 1)) == D("0.19")
    with pytest.raises(TaxError):
        wctx.tax_table.rate_for(TaxProfile(country="ZZ"), date(2025, 3, 1))
    with pytest.raises(TaxError):  # the packaged table itself keeps refusing
        load_tax_table().rate_for(TaxProfile(), date(2025, 3, 1))


def test_journal_timers_of_an_invoice_balance_and_fall_at_issue_and_month_closes(
    wctx: BillingContext,
) -> None:
    state = state_from_snapshot(
        snapshot(customer={"customer_id": "c", "country": "DE"}, billing_anchor="2025-03-01"),
        started_on=date(2025, 3, 16),
    )
    out = apply(state, Activate(on=date(2025, 3, 16)), wctx)  # stub [Mar 16, Apr 1): 38.00 x 16/31 = 19.61
    doc = out.documents[0].model_copy(update={"document_number": "INV-00000042"})
    timers = entries_for(doc)
    issue = [e for due, kind, e in timers if kind == ISSUE_KIND]
    recognition = [(due, e) for due, kind, e in timers if kind == RECOGNITION_KIND]
    assert [e.kind for e in issue] == ["issue"]
    assert {(ln.account, ln.debit, ln.credit) for ln in issue[0].lines} == {
        ("accounts_receivable", D("23.34"), 0),
        ("deferred_revenue", 0, D("19.61")),
        ("tax_payable", 0, D("3.73")),
    }
    assert [(due, e.entry_date) for due, e in recognition] == [
        (datetime(2025, 4, 1, tzinfo=UTC), date(2025, 3, 31))
    ]
    assert recognition[0][1].source_document == "INV-00000042"
    for _, _, e in timers:
        assert e.total_debit == e.total_credit == sum(ln.debit for ln in e.lines)
        assert e.entry_id  # deterministic ids: the same document always gives the same entries
    assert [e.entry_id for _, _, e in entries_for(doc)] == [e.entry_id for _, _, e in timers]


def test_preview_commands_match_the_worker_mapping() -> None:
    day = date(2025, 3, 11)
    assert command_for("change_plan", day, plan="pro") == ChangePlan(on=day, plan_id="pro")
    assert command_for("change_plan", day, plan="starter", timing="period_end") == ChangePlan(
        on=day, plan_id="starter", timing="period_end"
    )
    assert command_for("cancel", day, timing="immediate") == Cancel(on=day, timing="immediate")
    with pytest.raises(PreviewError):
        command_for("change_plan", day)
    with pytest.raises(PreviewError):
        command_for("teleport", day)
    with pytest.raises(PreviewError):
        command_for("cancel", day, timing="tomorrow")


def test_price_override_and_payment_terms_from_the_snapshot(wctx: BillingContext) -> None:
    snap = snapshot(
        plan_id="enterprise",
        quantity=10,
        unit_amount="80.00",
        payment_terms_days=30,
        billing_anchor="2025-03-01",
    )
    out = apply(state_from_snapshot(snap, started_on=date(2025, 3, 1)), Activate(on=date(2025, 3, 1)), wctx)
    (doc,) = out.documents
    assert doc.lines[0].unit_amount == D("80.00") and doc.total == D("800.00")  # not the catalog's 99.00
    assert doc.due_date == date(2025, 3, 31)  # net 30
