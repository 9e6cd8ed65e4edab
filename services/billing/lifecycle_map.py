"""From lifecycle changes to billing steps. Pure: no I/O, no clock.

The lifecycle publishes every change as ``SubscriptionStateChanged`` with the domain events
of the decision in ``events`` (typed: :mod:`shared.contracts.subscription`). Billing reads only
those events (never the status alone) and turns each into steps on the subscription's :class:`BillingState`:

* :class:`Start` - (re)build the billing state from the snapshot and bill the first period
  (``SubscriptionActivated``: creation, approval, trial conversion; ``SubscriptionReactivated``
  with a new billing anchor).
* :class:`Align` - make the items billed from a period start (renewal, resume) those of the
  lifecycle's snapshot. The lifecycle owns the terms; billing's own end-of-term scheduling
  (downgrades, seat decreases, add-on removals by billing policy) normally agrees already,
  and a plan change the lifecycle applies at the period end arrives here.
* :class:`Run` - one domain command (``apply``) at the event's business date.

Which lifecycle event maps to which command (dates are the event's effective date in UTC):

==========================  ==========================================================
SubscriptionActivated       Start(period_start)  -> first invoice (a trial is free: the
                            activation comes at conversion)
SubscriptionReactivated     Start(period_start) when ``new_billing_anchor`` (restored after
                            an end); lifting a suspension bills nothing
SubscriptionRenewed         Align + Renew(period_start): billed in advance
PlanChanged immediate       ChangePlan(timing=immediate): proration per billing policy
PlanChanged period_end      nothing (the Align of the renewal/resume it comes with)
QuantityChanged immediate   ChangeQuantity (billing policy: increase now, decrease at period end;
                            with ``invoice: now|next`` prorated now either way)
QuantityChanged period_end  nothing (a scheduled seat change: the Align of its renewal)
AddOnAdded / AddOnRemoved   AddAddon / RemoveAddon
SubscriptionPaused          Pause: unused paid days credited (pending), no invoices while paused
SubscriptionResumed         Align + Resume: the rest of the period invoiced at once
SubscriptionCancelled       Cancel(immediate): unused time credited -> credit note. At the
                            end of the period (``timing=period_end``) nothing is unused:
                            only leftover pending adjustments are invoiced
SubscriptionExpired /       Cancel(immediate, credit=none): billing ends without a credit
SubscriptionTerminated
TrialStarted                Cancel(immediate) if a paid period runs (start_trial on an
                            active subscription stops it; conversion starts a new one)
everything else             nothing (PlanChangeScheduled, CancellationScheduled/Revoked,
                            past_due/suspended/recovered come from billing itself ...)
==========================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from services.billing.domain import (
    BASE_ITEM,
    AddAddon,
    BillingCommand,
    BillingState,
    Cancel,
    ChangePlan,
    ChangeQuantity,
    Item,
    Pause,
    RemoveAddon,
    Renew,
    Resume,
)
from services.billing.domain.model import Invoicing, ScheduledChange
from shared.contracts import events as ev
from shared.contracts import subscription as lc
from shared.contracts.commands import Timing


def _invoicing(invoice: str | None) -> Invoicing | None:
    # The command's `invoice: now|next` in billing's words; None leaves it to the billing policy.
    return {"now": "invoice_immediately", "next": "pending"}.get(invoice or "")  # type: ignore[return-value]


def _day(moment: datetime) -> date:
    return moment.astimezone(UTC).date() if moment.tzinfo else moment.date()


@dataclass(frozen=True)
class Start:
    """Build the billing state from the snapshot and activate it on ``on`` (first invoice).

    ``through``: a backdated start, billed at once up to the period containing that day.
    """

    on: date
    through: date | None = None


@dataclass(frozen=True)
class Align:
    """Bill the snapshot's items from ``on`` (a period start)."""

    on: date


@dataclass(frozen=True)
class Run:
    """Apply one domain command; ``reason`` labels the documents it produces."""

    command: BillingCommand
    reason: str


Step = Start | Align | Run


def invoices(events: Iterable[lc.DomainEvent]) -> bool:
    """True when the events start or renew billing: most likely an invoice is issued."""
    return any(
        isinstance(step, Start) or (isinstance(step, Run) and isinstance(step.command, Renew))
        for event in events
        for step in steps_for(event)
    )


def steps_for(event: lc.DomainEvent) -> list[Step]:
    """What one lifecycle event means for billing (see the module docstring)."""
    on = _day(event.effective_at)
    if isinstance(event, lc.SubscriptionActivated):
        return [Start(event.period_start, event.billed_through)]
    if isinstance(event, lc.SubscriptionReactivated):
        return [Start(event.period_start)] if event.new_billing_anchor else []
    if isinstance(event, lc.SubscriptionRenewed):
        return [Align(event.period_start), Run(Renew(on=event.period_start), "renewal")]
    if isinstance(event, lc.PlanChanged):
        if event.timing is not Timing.IMMEDIATE:
            return []
        return [
            Run(
                ChangePlan(
                    on=on,
                    plan_id=event.to_plan_id,
                    quantity=event.to_quantity,
                    timing=Timing.IMMEDIATE,
                    invoicing=_invoicing(event.invoice),
                    billing_interval=event.billing_interval,
                ),
                "change",
            )
        ]
    if isinstance(event, lc.QuantityChanged):
        if event.timing is not Timing.IMMEDIATE:  # applied at a period boundary: the Align carries it
            return []
        return [
            Run(
                ChangeQuantity(
                    on=on,
                    quantity=event.to_quantity,
                    # A change that says when to invoice its proration is prorated now, a decrease too
                    # (Chargebee's immediate prorated decrease); otherwise the billing policy decides.
                    timing=Timing.IMMEDIATE if event.invoice is not None else None,
                    invoicing=_invoicing(event.invoice),
                ),
                "change",
            )
        ]
    if isinstance(event, lc.AddOnAdded):
        return [Run(AddAddon(on=on, plan_id=event.addon_plan_id, quantity=event.quantity), "change")]
    if isinstance(event, lc.AddOnRemoved):
        return [Run(RemoveAddon(on=on, item_id=event.addon_plan_id), "change")]
    if isinstance(event, lc.SubscriptionPaused):
        return [Run(Pause(on=on), "pause")]
    if isinstance(event, lc.SubscriptionResumed):
        return [Align(on), Run(Resume(on=on), "resume")]
    if isinstance(event, lc.SubscriptionCancelled):
        return [Run(Cancel(on=_day(event.ended_at), timing=Timing.IMMEDIATE), "cancellation")]
    if isinstance(event, lc.SubscriptionExpired | lc.SubscriptionTerminated):
        return [Run(Cancel(on=_day(event.ended_at), timing=Timing.IMMEDIATE, credit="none"), "cancellation")]
    if isinstance(event, lc.TrialStarted):
        return [Run(Cancel(on=on, timing=Timing.IMMEDIATE), "trial")]
    return []


def is_live(state: BillingState | None) -> bool:
    """Billing runs: activated (something charged) and not ended."""
    return state is not None and state.cancelled_on is None and state.charged_through is not None


# --------------------------------------------------------------------------- alignment


def _terms(items: Sequence[Item]) -> list[tuple[str, str, int]]:
    return sorted((i.item_id, i.plan_id, i.quantity) for i in items)


def snapshot_items(
    snapshot: ev.SubscriptionSnapshot, *, previous: Sequence[Item], on: date
) -> tuple[Item, ...]:
    """The snapshot's items; an item that keeps its plan keeps its price date and price override.

    A new plan bills its catalog price from ``on`` (an override of the old plan does not
    carry over, as with ``ChangePlan``).
    """
    prev = {i.item_id: i for i in previous}

    def item(item_id: str, plan_id: str, quantity: int, override: Any) -> Item:
        old = prev.get(item_id)
        if old is not None and old.plan_id == plan_id:
            return old.model_copy(update={"quantity": quantity})
        return Item(item_id=item_id, plan_id=plan_id, quantity=quantity, unit_amount=override, price_date=on)

    items = [item(BASE_ITEM, snapshot.plan_id, snapshot.quantity, None)]
    items += [item(a.plan_id, a.plan_id, a.quantity, a.unit_amount) for a in snapshot.addons]
    return tuple(items)


def align(
    state: BillingState, snapshot: ev.SubscriptionSnapshot, on: date
) -> tuple[BillingState, str | None]:
    """The state whose items billed from the period start ``on`` are the snapshot's (and a note).

    Only when nothing is charged from ``on`` (a renewal boundary, or a paused subscription
    resuming): the items then change without any proration.
    """
    sc = state.scheduled_change
    due = sc is not None and sc.effective_on <= on
    upcoming = sc.items if sc is not None and due else state.items
    upcoming_interval = (sc.billing_interval if sc is not None and due else None) or state.billing_interval
    desired = snapshot_items(snapshot, previous=upcoming, on=on)
    # The lifecycle owns the interval too: a change of interval at this boundary restarts the cycle.
    interval = snapshot.billing_interval if snapshot.billing_interval != upcoming_interval else None
    if _terms(upcoming) == _terms(desired) and interval is None:
        return state, None
    charged_from_on = (
        state.paused_since is None and state.charged_through is not None and state.charged_through > on
    )
    if charged_from_on:
        return state, f"items differ from the lifecycle on {on} but {on} is already charged: kept"
    if state.paused_since is not None:
        return state.model_copy(update={"items": desired, "scheduled_change": None if due else sc}), (
            f"items aligned with the lifecycle on resume {on}"
        )
    change = ScheduledChange(
        effective_on=on,
        items=desired,
        billing_interval=interval or (sc.billing_interval if sc is not None and due else None),
        reason="lifecycle terms for the new period",
    )
    return state.model_copy(update={"scheduled_change": change}), f"items aligned with the lifecycle on {on}"
