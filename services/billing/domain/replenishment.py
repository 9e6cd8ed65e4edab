"""Replenishment cycles: price fixed per cycle, availability, skip and delay. Pure.

A replenishment subscription delivers physical goods every ``cadence`` days. Its state keeps
the due date of the next cycle and the due dates already run or skipped. A cycle runs only
for the due date it was scheduled for (:func:`run_cycle`), so a timer left over from before a
skip or a delay, or a timer delivered twice, bills nothing: a cycle is never billed twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.billing.domain.model import ZERO, Line
from shared.catalog import Plan
from shared.catalog.replenishment import ReplenishmentTerms, VolumeTier
from shared.money import DecimalString, is_exact, quantum


class ReplenishmentError(ValueError):
    """A replenishment command that cannot apply (unknown subscription, ended, bad input)."""


@dataclass(frozen=True)
class PriceListEntry:
    """A SKU's unit price from ``effective_at`` on (from a ``pricing.updated`` event)."""

    sku: str
    currency: str
    unit_amount: Decimal
    effective_at: datetime


@dataclass(frozen=True)
class PricedLine:
    """Units priced alike, and the basis the price was fixed by (shown on the invoice)."""

    quantity: int
    unit_amount: Decimal
    amount: Decimal
    basis: str


def price_in_force(
    entries: Sequence[PriceListEntry], sku: str, currency: str, at: datetime
) -> PriceListEntry | None:
    """The latest price-list entry of ``sku`` in ``currency`` effective at or before ``at``."""
    found = [e for e in entries if e.sku == sku and e.currency == currency and e.effective_at <= at]
    return max(found, key=lambda e: e.effective_at) if found else None


def graduated(quantity: int, tiers: Sequence[VolumeTier], currency: str) -> list[PricedLine]:
    """Graduated volume pricing: each unit at the price of the tier it falls in; one line per tier used.

    The lines' quantities sum to ``quantity`` and each amount is exact (unit price times units).
    """
    if quantity < 0:
        raise ReplenishmentError("quantity cannot be negative")
    out: list[PricedLine] = []
    floor = 0
    for tier in tiers:
        top = quantity if tier.up_to is None else min(quantity, tier.up_to)
        units = top - floor
        if units > 0:
            if not is_exact(tier.unit_amount, currency):
                raise ReplenishmentError(f"tier price {tier.unit_amount} is not exact in {currency}")
            bound = "and above" if tier.up_to is None else f"to {tier.up_to}"
            out.append(
                PricedLine(
                    units,
                    tier.unit_amount,
                    tier.unit_amount * units,
                    f"volume tier {floor + 1} {bound}",
                )
            )
        if tier.up_to is None or tier.up_to >= quantity:
            break
        floor = tier.up_to
    return out


def capped(
    previous: Decimal | None, proposed: Decimal, max_change_percent: Decimal | None, currency: str
) -> Decimal:
    """``proposed`` held within ``max_change_percent`` of ``previous``, in the currency's minor unit.

    The bounds are rounded inwards (lower bound up, upper bound down), so the cap holds after
    rounding too. No previous price or no cap: the proposed price.
    """
    if previous is None or max_change_percent is None:
        return proposed
    q = quantum(currency)
    step = previous * max_change_percent / Decimal(100)
    low = (previous - step).quantize(q, rounding=ROUND_CEILING)
    high = (previous + step).quantize(q, rounding=ROUND_FLOOR)
    return min(max(proposed, low), high)


def quote(
    plan: Plan,
    terms: ReplenishmentTerms,
    *,
    currency: str,
    billing_interval: str,
    quantity: int,
    due: date,
    at: datetime,
    previous_unit: Decimal | None,
    price_list: Sequence[PriceListEntry] = (),
) -> list[PricedLine]:
    """The priced lines of a cycle of ``quantity`` units due on ``due`` (price fixed at ``at``)."""
    if terms.pricing == "tiers":
        return graduated(quantity, terms.tiers, currency)
    base = plan.price_on(currency, billing_interval, due)
    unit, basis = base.unit_amount, f"catalog price from {base.effective_from.isoformat()}"
    if terms.pricing == "price_list":
        entry = price_in_force(price_list, terms.sku, currency, at)
        if entry is not None:
            unit, basis = entry.unit_amount, f"price list from {entry.effective_at.isoformat()}"
    held = capped(previous_unit, unit, terms.max_change_percent, currency)
    if held != unit:
        basis = f"{basis}, capped at {terms.max_change_percent}% change from {previous_unit}"
    return [PricedLine(quantity, held, held * quantity, basis)] if quantity > 0 else []


class ReplenishmentState(BaseModel):
    """A replenishment subscription as billing runs it."""

    model_config = ConfigDict(frozen=True)

    subscription_id: str
    customer_id: str
    plan_id: str
    sku: str
    currency: str
    billing_interval: str
    quantity: int = Field(ge=1)
    next_due: date
    cycle: int = Field(default=0, description="cycles run (delivered in full or in part)")
    delays: int = Field(default=0, description="delays of the pending cycle (shortage or customer)")
    last_unit_amount: DecimalString | None = None
    billed: tuple[date, ...] = Field(default=(), description="due dates of the cycles run")
    skipped: tuple[date, ...] = ()
    ended: bool = False
    held: bool = Field(default=False, description="paused or suspended: no cycle runs until released")
    commands: tuple[str, ...] = Field(default=(), description="ids of the last customer commands applied")


def start(
    *,
    subscription_id: str,
    customer_id: str,
    plan_id: str,
    terms: ReplenishmentTerms,
    currency: str,
    billing_interval: str,
    quantity: int,
    first_due: date,
) -> ReplenishmentState:
    """A new replenishment subscription whose first cycle is due on ``first_due``."""
    return ReplenishmentState(
        subscription_id=subscription_id,
        customer_id=customer_id,
        plan_id=plan_id,
        sku=terms.sku,
        currency=currency.upper(),
        billing_interval=billing_interval,
        quantity=quantity,
        next_due=first_due,
    )


def _live(state: ReplenishmentState) -> None:
    if state.ended:
        raise ReplenishmentError(f"replenishment {state.subscription_id} has ended")


def skip_next(state: ReplenishmentState, terms: ReplenishmentTerms) -> ReplenishmentState:
    """Skip the next delivery: it is neither delivered nor billed; the one after is due a cadence later."""
    _live(state)
    return state.model_copy(
        update={
            "skipped": (*state.skipped, state.next_due),
            "next_due": state.next_due + timedelta(days=terms.days),
            "delays": 0,
        }
    )


def delay_next(state: ReplenishmentState, days: int) -> ReplenishmentState:
    """Move the next delivery ``days`` later (the cadence then counts from the delivery)."""
    _live(state)
    if days < 1:
        raise ReplenishmentError("a delay is at least one day")
    return state.model_copy(
        update={"next_due": state.next_due + timedelta(days=days), "delays": state.delays + 1}
    )


def set_quantity(state: ReplenishmentState, quantity: int) -> ReplenishmentState:
    """Units per delivery from the next cycle on."""
    if quantity < 1:
        raise ReplenishmentError("a replenishment delivers at least one unit")
    return state.model_copy(update={"quantity": quantity})


def hold(state: ReplenishmentState) -> ReplenishmentState:
    """Paused or suspended: no cycle runs (a timer that fires meanwhile changes nothing)."""
    return state.model_copy(update={"held": True})


def release(state: ReplenishmentState, on: date) -> ReplenishmentState:
    """Resumed on ``on``: the pending cycle is due then at the earliest (missed ones are not made up)."""
    return state.model_copy(update={"held": False, "next_due": max(state.next_due, on)})


def end(state: ReplenishmentState) -> ReplenishmentState:
    """No further cycles."""
    return state.model_copy(update={"ended": True})


CycleStatus = Literal["delivered", "partial", "delayed", "stale"]


@dataclass(frozen=True)
class CycleOutcome:
    """What running a cycle did: the state after it, and the priced lines of the order (if any)."""

    state: ReplenishmentState
    status: CycleStatus
    due: date
    quantity_ordered: int
    quantity_delivered: int
    lines: tuple[PricedLine, ...]

    @property
    def total(self) -> Decimal:
        """The cycle's amount before tax."""
        return sum((line.amount for line in self.lines), ZERO)


def run_cycle(
    state: ReplenishmentState,
    plan: Plan,
    terms: ReplenishmentTerms,
    *,
    due: date,
    at: datetime,
    stock: int | None,
    price_list: Sequence[PriceListEntry] = (),
) -> CycleOutcome:
    """Run the cycle due on ``due``: check stock, fix the price, move the schedule on.

    Only the pending cycle runs: a ``due`` other than ``state.next_due`` (a timer from before a
    skip or delay, or one delivered twice), or any while held or ended, is ``stale`` and changes
    nothing. ``stock`` None means
    not stock-limited. Short stock: ``delay`` moves the cycle ``delay_days`` on; ``partial``
    delivers and bills what is in stock (a delay if nothing is).
    """
    if state.ended or state.held or due != state.next_due or due in state.billed:
        return CycleOutcome(state, "stale", due, state.quantity, 0, ())
    wanted = state.quantity
    available = wanted if stock is None else max(0, min(wanted, stock))
    if available < wanted and (terms.shortage == "delay" or available == 0):
        later = state.model_copy(
            update={"next_due": due + timedelta(days=terms.delay_days), "delays": state.delays + 1}
        )
        return CycleOutcome(later, "delayed", due, wanted, 0, ())
    lines = quote(
        plan,
        terms,
        currency=state.currency,
        billing_interval=state.billing_interval,
        quantity=available,
        due=due,
        at=at,
        previous_unit=state.last_unit_amount,
        price_list=price_list,
    )
    # The cap compares unit prices: under tiers there is no single one to carry.
    last = lines[0].unit_amount if terms.pricing != "tiers" and lines else state.last_unit_amount
    after = state.model_copy(
        update={
            "cycle": state.cycle + 1,
            "next_due": due + timedelta(days=terms.days),
            "delays": 0,
            "last_unit_amount": last,
            "billed": (*state.billed, due),
        }
    )
    status: CycleStatus = "delivered" if available == wanted else "partial"
    return CycleOutcome(after, status, due, wanted, available, tuple(lines))


def invoice_lines(outcome: CycleOutcome, plan: Plan, terms: ReplenishmentTerms) -> list[Line]:
    """Invoice lines of a cycle; each names the basis its price was fixed by."""
    end_day = outcome.due + timedelta(days=terms.days)
    return [
        Line(
            kind="one_off",
            description=f"{plan.name} ({terms.sku}) delivery {outcome.state.cycle}: {p.basis}",
            plan_id=plan.id,
            service_period_start=outcome.due,
            service_period_end=end_day,
            quantity=p.quantity,
            unit_amount=p.unit_amount,
            amount=p.amount,
            price_basis=p.basis,
        )
        for p in outcome.lines
    ]
