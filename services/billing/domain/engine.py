"""The billing engine: one pure function from (billing state, command, date) to documents and new state.

``apply`` is the only code path. ``preview`` is ``apply`` with the new state thrown away,
so a preview equals what the command would actually produce, by construction.

Billing is in advance by default: activation and each renewal charge the coming period.
Items of an ``in_arrears`` plan (catalog ``charge_mode``) are billed at each period end
for the days they served, and their used part is billed at once on a cancellation,
pause or change. An immediate change credits the unused part of what was actually
charged (from the ledger of charged lines) and charges the rest of the period on the new
terms; the lines roll into the next invoice (pending adjustments) or are invoiced at
once, per the billing policy or the command. Partial periods are priced by the
catalog's proration convention (day count, change day, rounding; per plan). A document
never mixes a charge into a credit note: credits that outweigh the charges go on a
credit note, the charges on an invoice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.billing.domain.documents import AssembledDocument, assemble_document
from services.billing.domain.model import (
    BASE_ITEM,
    ZERO,
    BillingError,
    BillingState,
    ChargedLine,
    Document,
    Invoicing,
    Item,
    Line,
    NoChange,
    PauseInterval,
    ScheduledChange,
    Settlement,
    TaxProfile,
    Timing,
)
from services.billing.domain.policy import BillingPolicy, ChangeRule, plan_change_rule
from services.billing.domain.proration import convention_fraction, credit_from, prorate, unused_credit
from services.billing.domain.tax import TaxTable
from shared.catalog import Catalog
from shared.contracts import events as ev
from shared.money import DecimalString, is_exact, normalize_currency
from shared.periods import parse_interval, period_containing, periods_between


@dataclass(frozen=True)
class BillingContext:
    """The configuration every billing decision reads: catalog, policy, tax table."""

    catalog: Catalog
    policy: BillingPolicy
    tax_table: TaxTable


# --------------------------------------------------------------------------- commands


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    on: date = Field(description="the business date the command takes effect (never read from a clock)")


class Activate(_Command):
    """First invoice: at subscription start, or at trial conversion (a trial is free).

    ``through``: a backdated start (Stripe's ``backdate_start_date``) invoiced on that later
    day: every period from ``on`` up to the one containing ``through`` is billed at once (in
    advance), the elapsed periods of in-arrears items too, and the anchor is kept.
    """

    command: Literal["activate"] = "activate"
    through: date | None = None


class Renew(_Command):
    """Bill the period starting ``on`` (a period boundary), with any pending adjustments."""

    command: Literal["renew"] = "renew"


class ChangePlan(_Command):
    """Move the base item to another plan (and optionally another interval, quantity or price).

    Without ``unit_amount`` the new plan bills its catalog price: a price override of the
    old plan does not carry over. Without ``quantity`` the quantity is kept. A new
    ``billing_interval`` restarts the cycle on the change date (immediate) or on the
    term end (end of term).
    """

    command: Literal["change_plan"] = "change_plan"
    plan_id: str
    billing_interval: str | None = None
    quantity: int | None = Field(default=None, ge=1)
    unit_amount: DecimalString | None = None
    timing: Timing | None = None
    invoicing: Invoicing | None = None


class ChangeQuantity(_Command):
    """Set the quantity of an item (the base plan by default)."""

    command: Literal["change_quantity"] = "change_quantity"
    quantity: int = Field(ge=1)
    item_id: str = BASE_ITEM
    timing: Timing | None = None
    invoicing: Invoicing | None = None


class AddAddon(_Command):
    """Add an add-on item."""

    command: Literal["add_addon"] = "add_addon"
    plan_id: str
    quantity: int = Field(default=1, ge=1)
    unit_amount: DecimalString | None = None
    item_id: str | None = None
    timing: Timing | None = None
    invoicing: Invoicing | None = None


class RemoveAddon(_Command):
    """Remove an add-on item."""

    command: Literal["remove_addon"] = "remove_addon"
    item_id: str
    timing: Timing | None = None
    invoicing: Invoicing | None = None


class Cancel(_Command):
    """Cancel now (credit for unused time) or at the end of the term (no credit)."""

    command: Literal["cancel"] = "cancel"
    timing: Timing | None = None
    credit: Literal["account_credit", "refund", "none"] | None = None


class Pause(_Command):
    """Stop service and billing from ``on``; the cycle keeps its anchor."""

    command: Literal["pause"] = "pause"


class Resume(_Command):
    """Resume service from ``on``: bill the rest of the period it falls in, if not paid."""

    command: Literal["resume"] = "resume"


class AddOneOff(_Command):
    """A one-off charge: a line of its own, no service period, not prorated."""

    command: Literal["add_one_off"] = "add_one_off"
    description: str
    unit_amount: DecimalString
    quantity: int = Field(default=1, ge=1)
    invoicing: Invoicing | None = None


class AddSetupCredit(_Command):
    """A setup credit (``amount`` > 0 is given back): a line of its own."""

    command: Literal["add_setup_credit"] = "add_setup_credit"
    description: str
    amount: DecimalString
    invoicing: Invoicing | None = None


class InvoicePending(_Command):
    """Invoice the pending adjustments now."""

    command: Literal["invoice_pending"] = "invoice_pending"


BillingCommand = Annotated[
    Activate
    | Renew
    | ChangePlan
    | ChangeQuantity
    | AddAddon
    | RemoveAddon
    | Cancel
    | Pause
    | Resume
    | AddOneOff
    | AddSetupCredit
    | InvoicePending,
    Field(discriminator="command"),
]


class BillingOutcome(BaseModel):
    """What a command produces: documents to number and publish, and the next billing state."""

    model_config = ConfigDict(frozen=True)

    state: BillingState
    documents: tuple[Document, ...] = ()
    new_pending: tuple[Line, ...] = Field(default=(), description="lines parked in pending adjustments")
    account_credit_after: DecimalString
    timing: Timing | None = None
    effective_on: date
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- state


def new_billing_state(
    *,
    subscription_id: str,
    currency: str,
    billing_interval: str,
    billing_anchor: date,
    items: Sequence[Item],
    tax_profile: TaxProfile | None = None,
    payment_terms_days: int = 0,
    anchor_day: int | None = None,
    policy: BillingPolicy | None = None,
) -> BillingState:
    """A subscription's billing state before its first invoice (validates payment terms against policy)."""
    parse_interval(billing_interval)
    if policy is not None and payment_terms_days not in policy.payment_terms.allowed_days:
        raise BillingError(f"payment terms net {payment_terms_days} not allowed")
    return BillingState(
        subscription_id=subscription_id,
        currency=normalize_currency(currency),
        billing_interval=billing_interval,
        billing_anchor=billing_anchor,
        anchor_day=anchor_day,
        items=tuple(items),
        tax_profile=tax_profile or TaxProfile(),
        payment_terms_days=payment_terms_days,
    )


def state_from_snapshot(snapshot: ev.SubscriptionSnapshot, *, started_on: date) -> BillingState:
    """Billing state from the lifecycle's snapshot; ``started_on`` fixes grandfathered prices."""
    if snapshot.billing_anchor is None:
        raise BillingError(f"subscription {snapshot.subscription_id} has no billing anchor")
    items = [
        Item(
            item_id=BASE_ITEM,
            plan_id=snapshot.plan_id,
            quantity=snapshot.quantity,
            unit_amount=snapshot.unit_amount,
            price_date=started_on,
        )
    ]
    items += [
        Item(
            item_id=a.plan_id,
            plan_id=a.plan_id,
            quantity=a.quantity,
            unit_amount=a.unit_amount,
            price_date=started_on,
        )
        for a in snapshot.addons
    ]
    c = snapshot.customer
    return new_billing_state(
        subscription_id=snapshot.subscription_id,
        currency=snapshot.currency,
        billing_interval=snapshot.billing_interval,
        billing_anchor=snapshot.billing_anchor,
        items=items,
        tax_profile=TaxProfile(country=c.country, region=c.region, tax_exempt=c.tax_exempt),
        payment_terms_days=snapshot.payment_terms_days,
        anchor_day=snapshot.anchor_day,
    )


# --------------------------------------------------------------------------- helpers


def current_period(state: BillingState, day: date) -> tuple[date, date]:
    """The billing period ``[start, end)`` of this subscription that contains ``day``."""
    return period_containing(
        day, billing_anchor=state.billing_anchor, interval=state.billing_interval, anchor_day=state.anchor_day
    )


def unit_price(ctx: BillingContext, state: BillingState, item: Item, period_start: date) -> Decimal:
    """Unit amount billed for ``item`` in the period starting ``period_start``.

    An override wins. Otherwise the catalog's ``renewal_pricing`` picks the version:
    ``grandfathered`` = in force on the item's ``price_date`` (when it started);
    ``current`` = in force at the period start (never before the item started).
    """
    if item.unit_amount is not None:
        return item.unit_amount
    plan = ctx.catalog.plan(item.plan_id)
    if ctx.catalog.renewal_pricing == "grandfathered":
        ref = item.price_date
    else:
        ref = max(period_start, item.price_date)
    return plan.price_on(state.currency, state.billing_interval, ref).unit_amount


@dataclass
class _Draft:
    """A state under construction plus the lines a command produced."""

    state: BillingState
    lines: list[Line]
    notes: list[str]

    def update(self, **changes: object) -> None:
        self.state = self.state.model_copy(update=changes)


def _charge(
    draft: _Draft,
    ctx: BillingContext,
    item: Item,
    start: date,
    end: date,
    period: tuple[date, date],
    kind: Literal["recurring", "proration_charge"],
    *,
    ledger: bool = True,
) -> None:
    """Charge ``item`` for ``[start, end)`` of ``period`` and record it in the ledger.

    In-arrears charges (``ledger=False``) bill time already served: nothing of them is
    ever credited back, so they stay out of the ledger of creditable charges.
    """
    state = draft.state
    unit = unit_price(ctx, state, item, period[0])
    full = unit * item.quantity
    convention = ctx.catalog.proration_for(item.plan_id)
    fraction = convention_fraction(convention, start, end, *period)
    amount = prorate(full, fraction, state.currency, convention.rounding)
    plan = ctx.catalog.plan(item.plan_id)
    description = f"{plan.name} ({state.billing_interval}) x {item.quantity}, {start} to {end}"
    if not fraction.is_full:
        description += f" (prorated {fraction} days)"
    charge_id = f"{state.subscription_id}#{state.next_charge_seq}"
    draft.lines.append(
        Line(
            kind=kind,
            description=description,
            item_id=item.item_id,
            plan_id=item.plan_id,
            service_period_start=start,
            service_period_end=end,
            quantity=item.quantity,
            unit_amount=unit,
            amount=amount,
            charge_id=charge_id,
        )
    )
    charged = ChargedLine(
        charge_id=charge_id,
        item_id=item.item_id,
        plan_id=item.plan_id,
        quantity=item.quantity,
        unit_amount=unit,
        amount=amount,
        service_period_start=start,
        service_period_end=end,
        period_start=period[0],
        period_end=period[1],
    )
    if ledger:
        draft.update(charged=(*state.charged, charged), next_charge_seq=state.next_charge_seq + 1)
    else:
        draft.update(next_charge_seq=state.next_charge_seq + 1)


def in_arrears(ctx: BillingContext, item: Item) -> bool:
    """True when the item's plan bills in arrears (at the end of each period)."""
    return ctx.catalog.charge_mode(item.plan_id) == "in_arrears"


def _bill_arrears(
    draft: _Draft, ctx: BillingContext, item_ids: set[str] | None, until: date, *, restart: date | None
) -> None:
    """Bill the served, unbilled time ``[arrears_from, until)`` of in-arrears items, per billing period.

    Each piece is prorated against the billing period it falls in (a full period is a
    ``recurring`` line). Afterwards the item accrues again from ``restart`` (``None``: it
    stops accruing, as on a pause or an end).
    """
    state = draft.state
    items = []
    for item in state.items:
        if (item_ids is not None and item.item_id not in item_ids) or not in_arrears(ctx, item):
            items.append(item)
            continue
        if item.arrears_from is not None and item.arrears_from < until:
            for a, b in periods_between(
                item.arrears_from,
                until,
                billing_anchor=state.billing_anchor,
                interval=state.billing_interval,
                anchor_day=state.anchor_day,
            ):
                period = current_period(draft.state, a)
                kind: Literal["recurring", "proration_charge"] = (
                    "recurring" if (a, b) == period else "proration_charge"
                )
                _charge(draft, ctx, item, a, b, period, kind, ledger=False)
        items.append(item.model_copy(update={"arrears_from": restart}))
    draft.update(items=tuple(items))


def _start_arrears(state: BillingState, ctx: BillingContext, on: date) -> tuple[Item, ...]:
    # In-arrears items not accruing yet start accruing on `on`; the others keep their date.
    return tuple(
        i.model_copy(update={"arrears_from": on}) if in_arrears(ctx, i) and i.arrears_from is None else i
        for i in state.items
    )


def _credit_unused(draft: _Draft, ctx: BillingContext, item_ids: set[str], on: date) -> None:
    """Credit the unused part, from ``on``, of every charged line of these items."""
    state = draft.state
    ledger: list[ChargedLine] = []
    for c in state.charged:
        convention = ctx.catalog.proration_for(c.plan_id)
        first = credit_from(on, convention)
        if c.item_id not in item_ids or c.service_period_end <= first:
            ledger.append(c)
            continue
        credit = unused_credit(
            c.amount,
            c.service_period_start,
            c.service_period_end,
            on,
            state.currency,
            already_credited=c.credited,
            convention=convention,
            period=c.period,
        )
        start = max(first, c.service_period_start)
        if credit > 0:
            plan = ctx.catalog.find(c.plan_id)
            name = plan.name if plan else c.plan_id
            draft.lines.append(
                Line(
                    kind="proration_credit",
                    description=f"Unused time on {name} x {c.quantity}, {start} to {c.service_period_end}",
                    item_id=c.item_id,
                    plan_id=c.plan_id,
                    service_period_start=start,
                    service_period_end=c.service_period_end,
                    quantity=c.quantity,
                    unit_amount=c.unit_amount,
                    amount=-credit,
                    credits_charge_id=c.charge_id,
                )
            )
        credited_from = start if c.credited_from is None else min(c.credited_from, start)
        ledger.append(c.model_copy(update={"credited": c.credited + credit, "credited_from": credited_from}))
    draft.update(charged=tuple(ledger))


def _settle(
    draft: _Draft,
    ctx: BillingContext,
    on: date,
    invoicing: Invoicing,
    account_credit: Decimal,
    settlement: Settlement = "account_credit",
) -> tuple[list[Document], list[Line], Decimal]:
    """Park the draft's lines as pending adjustments, or issue them (with earlier pending ones) now."""
    state = draft.state
    if invoicing == "pending":
        draft.update(pending_adjustments=(*state.pending_adjustments, *draft.lines))
        return [], list(draft.lines), account_credit
    lines = [*state.pending_adjustments, *draft.lines]
    draft.update(pending_adjustments=())
    if not lines:
        return [], [], account_credit
    if not state.tax_profile.country and not state.tax_profile.tax_exempt:
        draft.notes.append("customer has no country: taxed by the table's missing-country rule")
    charges = [line for line in lines if line.amount > 0]
    credits = [line for line in lines if line.amount <= 0]

    def assemble(group: list[Line], credit: Decimal) -> AssembledDocument:
        return assemble_document(
            group,
            subscription_id=state.subscription_id,
            currency=state.currency,
            issue_date=on,
            tax_table=ctx.tax_table,
            tax_profile=state.tax_profile,
            payment_terms_days=state.payment_terms_days,
            account_credit=credit,
            settlement=settlement,
        )

    whole = assemble(lines, account_credit)
    if whole.document.total >= 0 or not charges:
        return [whole.document], [], whole.account_credit_after
    # A charge line never travels inside a credit note: when the credits outweigh the charges
    # (decided on the taxed total: lines netting to zero can still round to a negative total, one
    # minor unit of tax per line), the credits go on a credit note (settled first) and the charges
    # on an invoice.
    docs: list[Document] = []
    for group in (credits, charges):
        assembled = assemble(group, account_credit)
        docs.append(assembled.document)
        account_credit = assembled.account_credit_after
    return docs, [], account_credit


def _outcome(
    draft: _Draft,
    docs: list[Document],
    pending: list[Line],
    credit: Decimal,
    on: date,
    timing: Timing | None = None,
) -> BillingOutcome:
    return BillingOutcome(
        state=draft.state,
        documents=tuple(docs),
        new_pending=tuple(pending),
        account_credit_after=credit,
        timing=timing,
        effective_on=on,
        notes=tuple(draft.notes),
    )


def _has_base(state: BillingState) -> bool:
    return any(i.item_id == BASE_ITEM for i in state.items)


def _require_live(state: BillingState) -> None:
    if state.cancelled_on is not None:
        raise BillingError(f"subscription {state.subscription_id} was cancelled on {state.cancelled_on}")


def _term_end(state: BillingState, on: date) -> date:
    # The end of the term in force on `on`: what has been charged through, else the period end.
    if state.charged_through is not None and state.charged_through > on:
        return state.charged_through
    return current_period(state, on)[1]


# --------------------------------------------------------------------------- item changes

Mutation = Callable[[tuple[Item, ...], date], tuple[Item, ...]]


def _change_items(
    state: BillingState,
    ctx: BillingContext,
    on: date,
    mutate: Mutation,
    rule: ChangeRule,
    account_credit: Decimal,
    *,
    reason: str,
    new_interval: str | None = None,
    net_item: str | None = None,
) -> BillingOutcome:
    """Apply an item change now (with proration) or schedule it for the end of the term.

    ``net_item``: present the proration of that item as one line for the difference.
    """
    _require_live(state)
    draft = _Draft(state, [], [])
    if rule.timing is Timing.PERIOD_END:
        effective = _term_end(state, on)
        base = state.scheduled_change.items if state.scheduled_change else state.items
        interval = new_interval or (
            state.scheduled_change.billing_interval if state.scheduled_change else None
        )
        draft.update(
            scheduled_change=ScheduledChange(
                effective_on=effective,
                items=mutate(base, effective),
                billing_interval=interval,
                reason=reason,
            )
        )
        draft.notes.append(f"{reason} scheduled for {effective}, no proration")
        return _outcome(draft, [], [], account_credit, effective, Timing.PERIOD_END)

    new_items = mutate(state.items, on)
    old_by_id = {i.item_id: i for i in state.items}
    new_by_id = {i.item_id: i for i in new_items}
    scheduled = state.scheduled_change
    if scheduled is not None:
        # The latest decision wins for the items it touches; other scheduled changes stay.
        try:
            items = mutate(scheduled.items, scheduled.effective_on)
            scheduled = scheduled.model_copy(update={"items": items})
        except BillingError:
            pass
    interval_changes = new_interval is not None and new_interval != state.billing_interval
    if interval_changes:
        # A new interval bills a new period in advance from today: it is invoiced now.
        rule = ChangeRule(timing=rule.timing, invoicing="invoice_immediately")
    conv = ctx.catalog.proration_for(state.item(BASE_ITEM).plan_id if _has_base(state) else "")
    charged_now = (
        state.paused_since is None and state.charged_through is not None and state.charged_through > on
    )
    # In-arrears items accrue whenever billing runs unpaused, also on a boundary not renewed yet.
    accruing = state.paused_since is None and state.charged_through is not None
    if interval_changes:
        # A new interval restarts the cycle on the change date (new anchor).
        assert new_interval is not None
        if charged_now:
            _credit_unused(draft, ctx, set(old_by_id), on)
        if accruing:
            _bill_arrears(draft, ctx, set(old_by_id), credit_from(on, conv), restart=None)
        realign = ctx.policy.plan_change.interval_change_anchor == "realign"
        draft.update(
            items=tuple(i.model_copy(update={"arrears_from": None}) for i in new_items),
            billing_interval=new_interval,
            billing_anchor=on if realign else state.billing_anchor,
            anchor_day=None if realign else state.anchor_day,
            scheduled_change=None,
        )
        if charged_now:
            period = current_period(draft.state, on)
            for item in new_items:
                if not in_arrears(ctx, item):
                    kind: Literal["recurring", "proration_charge"] = (
                        "recurring" if period[0] == on else "proration_charge"
                    )
                    _charge(draft, ctx, item, on, period[1], period, kind)
            draft.update(charged_through=period[1])
        if accruing:
            draft.update(items=_start_arrears(draft.state, ctx, credit_from(on, conv)))
    else:
        affected = {i for i in old_by_id.keys() | new_by_id.keys() if old_by_id.get(i) != new_by_id.get(i)}
        if not affected:
            raise NoChange(f"{reason}: nothing changes")
        if charged_now:
            _credit_unused(draft, ctx, affected, on)
        if accruing:
            _bill_arrears(draft, ctx, affected, credit_from(on, conv), restart=None)
        billed = {i.item_id: i for i in draft.state.items}
        # Items the change leaves alone keep their accrual date; changed ones start afresh.
        new_items = tuple(
            billed[i.item_id]
            if i.item_id not in affected and i.item_id in billed
            else i.model_copy(update={"arrears_from": None})
            for i in new_items
        )
        draft.update(items=new_items, scheduled_change=scheduled)
        if charged_now:
            period = current_period(state, on)
            for item in new_items:
                if item.item_id in affected and not in_arrears(ctx, item):
                    _charge(draft, ctx, item, on, period[1], period, "proration_charge")
        if accruing:
            draft.update(items=_start_arrears(draft.state, ctx, credit_from(on, conv)))
    if not charged_now:
        draft.notes.append("current period not charged: items changed without proration")
    if net_item is not None:
        _net_lines(draft, ctx, net_item, state.item(net_item).quantity)
    docs, pending, credit = _settle(draft, ctx, on, rule.invoicing, account_credit)
    return _outcome(draft, docs, pending, credit, on, Timing.IMMEDIATE)


def _net_lines(draft: _Draft, ctx: BillingContext, item_id: str, old_quantity: int) -> None:
    """Replace an item's proration credit and charge lines by one line for their difference.

    The ledger of charged lines is unchanged (the old charge is still credited and the new
    one recorded): only the presentation differs.
    """
    mine = [
        ln
        for ln in draft.lines
        if ln.item_id == item_id and ln.kind in ("proration_credit", "proration_charge")
    ]
    charges = [ln for ln in mine if ln.kind == "proration_charge"]
    if not charges or len(mine) < 2:
        return
    charge = charges[-1]
    net = sum((ln.amount for ln in mine), ZERO)
    rest = [ln for ln in draft.lines if ln not in mine]
    if net != 0:
        plan = ctx.catalog.find(charge.plan_id or "")
        name = plan.name if plan else charge.plan_id
        rest.append(
            Line(
                kind="proration_charge" if net > 0 else "proration_credit",
                description=f"{name}: quantity {old_quantity} -> {charge.quantity}, "
                f"{charge.service_period_start} to {charge.service_period_end}",
                item_id=item_id,
                plan_id=charge.plan_id,
                service_period_start=charge.service_period_start,
                service_period_end=charge.service_period_end,
                quantity=abs(charge.quantity - old_quantity),
                unit_amount=charge.unit_amount,
                amount=net,
            )
        )
    draft.lines = rest


def _change_plan(
    state: BillingState, cmd: ChangePlan, ctx: BillingContext, credit: Decimal
) -> BillingOutcome:
    plan = ctx.catalog.plan(cmd.plan_id)
    if plan.kind != "base":
        raise BillingError(f"{cmd.plan_id} is an add-on, not a plan")
    interval = cmd.billing_interval or state.billing_interval
    parse_interval(interval)
    current = state.item(BASE_ITEM)
    if cmd.unit_amount is not None and not is_exact(cmd.unit_amount, state.currency):
        raise BillingError(f"{cmd.unit_amount} is not exact in {state.currency}")
    if (
        current.plan_id == cmd.plan_id
        and interval == state.billing_interval
        and cmd.quantity in (None, current.quantity)
        and cmd.unit_amount == current.unit_amount
    ):
        raise NoChange("change_plan: nothing changes")

    def mutate(items: tuple[Item, ...], effective: date) -> tuple[Item, ...]:
        out = []
        for i in items:
            if i.item_id == BASE_ITEM:
                i = Item(
                    item_id=BASE_ITEM,
                    plan_id=cmd.plan_id,
                    quantity=cmd.quantity or i.quantity,
                    unit_amount=cmd.unit_amount,
                    price_date=effective,
                )
            out.append(i)
        return tuple(out)

    rule = plan_change_rule(
        ctx.policy, ctx.catalog, current.plan_id, cmd.plan_id, timing=cmd.timing, invoicing=cmd.invoicing
    )
    new_interval = interval if interval != state.billing_interval else None
    return _change_items(
        state, ctx, cmd.on, mutate, rule, credit, reason="plan change", new_interval=new_interval
    )


def _change_quantity(
    state: BillingState, cmd: ChangeQuantity, ctx: BillingContext, credit: Decimal
) -> BillingOutcome:
    current = state.item(cmd.item_id)
    if cmd.quantity == current.quantity:
        raise NoChange("change_quantity: nothing changes")
    rules = ctx.policy.quantity_change
    rule = (rules.increase if cmd.quantity > current.quantity else rules.decrease).overridden(
        cmd.timing, cmd.invoicing
    )

    def mutate(items: tuple[Item, ...], effective: date) -> tuple[Item, ...]:
        if not any(i.item_id == cmd.item_id for i in items):
            raise BillingError(f"no item {cmd.item_id!r}")
        return tuple(
            i.model_copy(update={"quantity": cmd.quantity}) if i.item_id == cmd.item_id else i for i in items
        )

    net = cmd.item_id if rules.presentation == "difference" else None
    return _change_items(state, ctx, cmd.on, mutate, rule, credit, reason="quantity change", net_item=net)


def _add_addon(state: BillingState, cmd: AddAddon, ctx: BillingContext, credit: Decimal) -> BillingOutcome:
    plan = ctx.catalog.plan(cmd.plan_id)
    if plan.kind != "addon":
        raise BillingError(f"{cmd.plan_id} is not an add-on")
    item_id = cmd.item_id or cmd.plan_id
    if any(i.item_id == item_id for i in state.items):
        raise BillingError(f"item {item_id!r} already on the subscription")
    rule = ctx.policy.addon.add.overridden(cmd.timing, cmd.invoicing)

    def mutate(items: tuple[Item, ...], effective: date) -> tuple[Item, ...]:
        if any(i.item_id == item_id for i in items):
            raise BillingError(f"item {item_id!r} already present")
        return (
            *items,
            Item(
                item_id=item_id,
                plan_id=cmd.plan_id,
                quantity=cmd.quantity,
                unit_amount=cmd.unit_amount,
                price_date=effective,
            ),
        )

    return _change_items(state, ctx, cmd.on, mutate, rule, credit, reason="add-on added")


def _remove_addon(
    state: BillingState, cmd: RemoveAddon, ctx: BillingContext, credit: Decimal
) -> BillingOutcome:
    if cmd.item_id == BASE_ITEM:
        raise BillingError("the base plan cannot be removed; cancel instead")
    state.item(cmd.item_id)
    rule = ctx.policy.addon.remove.overridden(cmd.timing, cmd.invoicing)

    def mutate(items: tuple[Item, ...], effective: date) -> tuple[Item, ...]:
        if not any(i.item_id == cmd.item_id for i in items):
            raise BillingError(f"no item {cmd.item_id!r}")
        return tuple(i for i in items if i.item_id != cmd.item_id)

    return _change_items(state, ctx, cmd.on, mutate, rule, credit, reason="add-on removed")


# --------------------------------------------------------------------------- cycle


def _activate(state: BillingState, cmd: Activate, ctx: BillingContext, credit: Decimal) -> BillingOutcome:
    _require_live(state)
    if state.charged_through is not None or state.charged:
        raise BillingError(f"subscription {state.subscription_id} is already active in billing")
    draft = _Draft(state, [], [])
    period = current_period(state, cmd.on)
    for item in state.items:
        if in_arrears(ctx, item):
            continue  # billed at the period end, for the days served
        # A start off the anchor day bills a leading stub prorated against the full period.
        _charge(draft, ctx, item, cmd.on, period[1], period, "recurring")
    draft.update(charged_through=period[1], items=_start_arrears(draft.state, ctx, cmd.on))
    issue_on = cmd.on
    if cmd.through is not None and cmd.through > cmd.on:
        # Backdated: the elapsed periods are billed now, on their own dates; the anchor stays.
        issue_on = cmd.through
        while period[1] <= cmd.through:
            period = current_period(draft.state, period[1])
            for item in draft.state.items:
                if not in_arrears(ctx, item):
                    _charge(draft, ctx, item, period[0], period[1], period, "recurring")
            draft.update(charged_through=period[1])
        _bill_arrears(draft, ctx, None, period[0], restart=period[0])
    docs, pending, credit = _settle(draft, ctx, issue_on, "invoice_immediately", credit)
    return _outcome(draft, docs, pending, credit, cmd.on)


def _renew(state: BillingState, cmd: Renew, ctx: BillingContext, credit: Decimal) -> BillingOutcome:
    _require_live(state)
    on = cmd.on
    if state.charged_through is None:
        raise BillingError("renewal before activation")
    if on < state.charged_through:
        raise BillingError(f"already billed through {state.charged_through}; cannot renew on {on}")
    draft = _Draft(state, [], [])
    # The period that ends now is billed for the in-arrears items that served it (old terms).
    end_of_service = min(on, state.cancel_at) if state.cancel_at is not None else on
    _bill_arrears(draft, ctx, None, end_of_service, restart=None)
    sc = state.scheduled_change
    if sc is not None and sc.effective_on <= on:
        update: dict[str, object] = {"items": sc.items, "scheduled_change": None}
        if sc.billing_interval and sc.billing_interval != state.billing_interval:
            # An interval change restarts the cycle where it takes effect.
            update["billing_interval"] = sc.billing_interval
            keep = ctx.policy.plan_change.interval_change_anchor == "keep"
            if keep:
                # The billing day stays only where the boundary is one of the new interval too
                # (the lifecycle decides alike); otherwise the cycle restarts here.
                start, _ = period_containing(
                    sc.effective_on,
                    billing_anchor=state.billing_anchor,
                    interval=sc.billing_interval,
                    anchor_day=state.anchor_day,
                )
                keep = start == sc.effective_on
            if not keep:
                update |= {"billing_anchor": sc.effective_on, "anchor_day": None}
        draft.update(**update)
        draft.notes.append(f"applied scheduled {sc.reason} effective {sc.effective_on}")
    period = current_period(draft.state, on)
    if period[0] != on:
        raise BillingError(f"{on} is not a period boundary (period is {period[0]} to {period[1]})")
    # Drop ledger lines that ended: nothing of them can be credited any more.
    draft.update(charged=tuple(c for c in draft.state.charged if c.service_period_end > on))
    if state.cancel_at is not None and on >= state.cancel_at:
        draft.update(cancelled_on=state.cancel_at)
        draft.notes.append(f"ended on {state.cancel_at}: nothing renewed")
        docs, pending, credit = _settle(draft, ctx, on, "invoice_immediately", credit)
        return _outcome(draft, docs, pending, credit, on)
    if state.paused_since is not None:
        draft.notes.append(f"paused since {state.paused_since}: period not billed")
        return _outcome(draft, [], [], credit, on)
    for item in draft.state.items:
        if not in_arrears(ctx, item):
            _charge(draft, ctx, item, on, period[1], period, "recurring")
    draft.update(
        charged_through=period[1],
        items=tuple(i.model_copy(update={"arrears_from": None}) for i in draft.state.items),
    )
    draft.update(items=_start_arrears(draft.state, ctx, on))
    docs, pending, credit = _settle(draft, ctx, on, "invoice_immediately", credit)
    return _outcome(draft, docs, pending, credit, on)


def _cancel(state: BillingState, cmd: Cancel, ctx: BillingContext, credit: Decimal) -> BillingOutcome:
    _require_live(state)
    policy = ctx.policy.cancellation
    timing = cmd.timing or policy.timing
    draft = _Draft(state, [], [])
    if timing is Timing.PERIOD_END:
        end = _term_end(state, cmd.on)
        draft.update(cancel_at=end, scheduled_change=None)
        draft.notes.append(f"cancels at the end of the term, {end}: no credit")
        return _outcome(draft, [], [], credit, end, Timing.PERIOD_END)
    mode = cmd.credit or policy.immediate_credit
    # The used part of in-arrears items is invoiced at once, whatever happens to unused time.
    convention = ctx.catalog.proration_for(state.item(BASE_ITEM).plan_id if _has_base(state) else "")
    _bill_arrears(draft, ctx, None, credit_from(cmd.on, convention), restart=None)
    if mode != "none":
        # Half-open periods: the cancellation day itself is credited, not charged.
        _credit_unused(draft, ctx, {i.item_id for i in state.items}, cmd.on)
    settlement: Settlement = "refund" if mode == "refund" else "account_credit"
    draft.update(cancelled_on=cmd.on, cancel_at=cmd.on, scheduled_change=None)
    docs, pending, credit = _settle(draft, ctx, cmd.on, "invoice_immediately", credit, settlement)
    return _outcome(draft, docs, pending, credit, cmd.on, Timing.IMMEDIATE)


def _pause(state: BillingState, cmd: Pause, ctx: BillingContext, credit: Decimal) -> BillingOutcome:
    _require_live(state)
    if state.paused_since is not None:
        raise BillingError(f"already paused since {state.paused_since}")
    draft = _Draft(state, [], [])
    if ctx.policy.pause.credit_paused_days:
        _credit_unused(draft, ctx, {i.item_id for i in state.items}, cmd.on)
    # In-arrears items stop accruing: the days served so far are billed (with the next invoice).
    _bill_arrears(draft, ctx, None, cmd.on, restart=None)
    draft.update(paused_since=cmd.on)
    docs, pending, credit = _settle(draft, ctx, cmd.on, ctx.policy.pause.invoicing, credit)
    return _outcome(draft, docs, pending, credit, cmd.on)


def _resume(state: BillingState, cmd: Resume, ctx: BillingContext, credit: Decimal) -> BillingOutcome:
    _require_live(state)
    since = state.paused_since
    if since is None:
        raise BillingError("not paused")
    if cmd.on < since:
        raise BillingError(f"resume on {cmd.on} is before the pause on {since}")
    draft = _Draft(state, [], [])
    pauses = (*state.pauses, PauseInterval(start=since, end=cmd.on)) if cmd.on > since else state.pauses
    draft.update(paused_since=None, pauses=pauses)
    period = current_period(state, cmd.on)
    if state.charged_through is not None:
        for item in state.items:
            if in_arrears(ctx, item):
                continue  # accrues from the resume day, billed at the period end
            # Days already paid and not credited (credit_paused_days: false) are not charged twice.
            if any(c.item_id == item.item_id and c.covers(cmd.on) for c in draft.state.charged):
                continue
            kind: Literal["recurring", "proration_charge"] = (
                "recurring" if cmd.on == period[0] else "proration_charge"
            )
            _charge(draft, ctx, item, cmd.on, period[1], period, kind)
        draft.update(
            charged_through=max(state.charged_through, period[1]),
            items=_start_arrears(draft.state, ctx, cmd.on),
        )
    docs, pending, credit = _settle(draft, ctx, cmd.on, "invoice_immediately", credit)
    return _outcome(draft, docs, pending, credit, cmd.on)


def _one_off(
    state: BillingState, cmd: AddOneOff | AddSetupCredit, ctx: BillingContext, credit: Decimal
) -> BillingOutcome:
    _require_live(state)
    if isinstance(cmd, AddOneOff):
        if cmd.unit_amount < 0:
            raise BillingError("a one-off charge is not negative; use a setup credit")
        amount = cmd.unit_amount * cmd.quantity
        line = Line(
            kind="one_off",
            description=cmd.description,
            quantity=cmd.quantity,
            unit_amount=cmd.unit_amount,
            amount=amount,
        )
    else:
        if cmd.amount <= 0:
            raise BillingError("a setup credit gives back a positive amount")
        line = Line(
            kind="setup_credit", description=cmd.description, unit_amount=-cmd.amount, amount=-cmd.amount
        )
    if not is_exact(line.amount, state.currency):
        raise BillingError(f"{line.amount} is not exact in {state.currency}")
    draft = _Draft(state, [line], [])
    invoicing = cmd.invoicing or ctx.policy.one_off.invoicing
    docs, pending, credit = _settle(draft, ctx, cmd.on, invoicing, credit)
    return _outcome(draft, docs, pending, credit, cmd.on)


def _invoice_pending(
    state: BillingState, cmd: InvoicePending, ctx: BillingContext, credit: Decimal
) -> BillingOutcome:
    draft = _Draft(state, [], [])
    docs, pending, credit = _settle(draft, ctx, cmd.on, "invoice_immediately", credit)
    return _outcome(draft, docs, pending, credit, cmd.on)


# --------------------------------------------------------------------------- entry points


def renewals_due(state: BillingState | None, on: date, *, include_on: bool = True) -> list[date]:
    """Period starts from the charged-through date up to ``on`` not billed yet (a preview runs them first).

    Nothing for a state that is not running (not activated, ended, paused) or that ends
    before; with ``include_on`` a renewal dated ``on`` itself counts (it fires at midnight).
    """
    if state is None or state.charged_through is None or state.cancelled_on is not None:
        return []
    if state.paused_since is not None:
        return []
    days = []
    day = state.charged_through
    while day < on or (include_on and day == on):
        days.append(day)
        if state.cancel_at is not None and day >= state.cancel_at:
            break
        day = current_period(state, day)[1]
        if len(days) > 1000:  # a runaway preview date, not a real catch-up
            raise BillingError(f"{on} is more than 1000 renewals after {state.charged_through}")
    return days


def apply(
    state: BillingState, command: BillingCommand, ctx: BillingContext, *, account_credit: Decimal = ZERO
) -> BillingOutcome:
    """Apply a billing command: the documents it produces and the next billing state.

    ``account_credit`` is the customer's available balance; the outcome's
    ``account_credit_after`` is what is left (or grown, by a credit note) afterwards.
    Pure: the same inputs always give the same outcome.
    """
    if account_credit < 0:
        raise BillingError("account credit cannot be negative")
    match command:
        case Activate():
            return _activate(state, command, ctx, account_credit)
        case Renew():
            return _renew(state, command, ctx, account_credit)
        case ChangePlan():
            return _change_plan(state, command, ctx, account_credit)
        case ChangeQuantity():
            return _change_quantity(state, command, ctx, account_credit)
        case AddAddon():
            return _add_addon(state, command, ctx, account_credit)
        case RemoveAddon():
            return _remove_addon(state, command, ctx, account_credit)
        case Cancel():
            return _cancel(state, command, ctx, account_credit)
        case Pause():
            return _pause(state, command, ctx, account_credit)
        case Resume():
            return _resume(state, command, ctx, account_credit)
        case AddOneOff() | AddSetupCredit():
            return _one_off(state, command, ctx, account_credit)
        case InvoicePending():
            return _invoice_pending(state, command, ctx, account_credit)
    raise BillingError(f"unknown billing command {command!r}")  # pragma: no cover


def preview(
    state: BillingState, command: BillingCommand, ctx: BillingContext, *, account_credit: Decimal = ZERO
) -> BillingOutcome:
    """What ``command`` would produce, without committing anything.

    It *is* :func:`apply` (one code path); the caller simply does not persist
    ``outcome.state`` nor publish ``outcome.documents``. Pass the same dates to the
    preview and to the real command and the numbers are identical.
    """
    return apply(state, command, ctx, account_credit=account_credit)
