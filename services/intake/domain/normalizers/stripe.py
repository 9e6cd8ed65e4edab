"""Stripe ``customer.subscription.*`` webhook events.

``customer.subscription.updated`` covers every change; the action is classified by
comparing ``data.previous_attributes`` with ``data.object``. The payload shape follows the
endpoint's API version: from ``2025-03-31.basil`` on, ``current_period_*`` moved from the
subscription to its items, so both places are read.

Money: ``unit_amount`` is an integer and ``unit_amount_decimal`` a decimal string, both in
the currency's **minor** units (exponent per currency: JPY 0, BHD 3); the decimal one is
preferred because it keeps sub-minor-unit precision.
"""

from __future__ import annotations

from decimal import Decimal

from services.intake.domain.amounts import AmountError, from_minor_units
from services.intake.domain.errors import UnparseableInput
from services.intake.domain.normalizers.base import ChannelResult, Context, line_money
from services.intake.domain.timefmt import interval_duration
from services.intake.domain.wire import Reader, load_object, must
from shared.contracts.canonical import (
    Action,
    CanonicalAccount,
    CanonicalCustomer,
    CanonicalOrderChange,
    Phase,
    StatusAfter,
)

CHANNEL = "stripe"

_STATUS: dict[str, StatusAfter] = {
    "active": "active",
    "trialing": "trialing",
    "past_due": "past_due",
    "unpaid": "past_due",
    "canceled": "cancelled",
    "paused": "suspended",
    "incomplete": "pending",
    "incomplete_expired": "failed",
}
_IGNORED_KINDS = ("trial_will_end", "pending_update_expired")


class _Item:
    """The subscription item a change is about, with its price read once."""

    def __init__(self, item: Reader, sub: Reader) -> None:
        self.id = item.text("id")
        price = item.obj("price") if item.has("price") else item.obj("plan")  # "plan" on very old versions
        self.price_id = price.text("id")
        product = price.raw("product")
        if isinstance(product, dict):  # expanded product object
            self.product = price.obj("product").text("id")
        else:
            self.product = price.text("product")
        self.currency = price.currency("currency") if price.has("currency") else sub.currency("currency")
        recurring = price.obj("recurring")
        unit_name = recurring.text("interval") or price.text("interval")
        count = recurring.integer("interval_count") or price.integer("interval_count") or 1
        self.interval = interval_duration(unit_name, count) if unit_name else None
        self.quantity = item.integer("quantity", minimum=0)
        self.period_start = item.epoch("current_period_start")
        self.period_end = item.epoch("current_period_end")
        self.unit: Decimal | None = None
        tiered = price.text("billing_scheme") == "tiered"
        minor = price.decimal("unit_amount_decimal")
        if minor is None:
            minor = price.decimal("unit_amount")
        if minor is not None and not tiered and self.currency:
            try:
                self.unit = from_minor_units(minor, self.currency)
            except AmountError as exc:
                price.amount_error("unit_amount_decimal", exc)
        self.reader = item


def _items(sub: Reader) -> list[Reader]:
    return sub.obj("items").objs("data")


def normalize(body: bytes, ctx: Context) -> ChannelResult:
    """Normalize a Stripe event about a subscription."""
    doc = load_object(body)
    if doc.get("object") != "event" and not ("type" in doc and "data" in doc):
        raise UnparseableInput("UNKNOWN_SHAPE", "not a Stripe event object")
    r = Reader(doc)
    event_type = r.text("type", required=True)
    event_id = r.text("id")
    version = r.integer("created")
    created = r.epoch("created")
    r.check()
    event_type = must(event_type, "type")
    if not event_type.startswith("customer.subscription."):
        return ChannelResult(ignored=f"Stripe {event_type} is not a subscription event", version=version)
    kind = event_type.removeprefix("customer.subscription.")
    if kind in _IGNORED_KINDS:
        return ChannelResult(ignored=f"Stripe {event_type} is a notice, not a change", version=version)
    data = r.obj("data", required=True)
    sub = data.obj("object", required=True)
    prev = data.obj("previous_attributes")
    subscription_id = sub.text("id", required=True)
    status_text = sub.text("status")
    customer = _customer(sub)
    cancel_at_period_end = sub.boolean("cancel_at_period_end")
    cancel_at = sub.epoch("cancel_at")
    period_start = sub.epoch("current_period_start")
    period_end = sub.epoch("current_period_end")
    items = [_Item(i, sub) for i in _items(sub)]
    previous_items = {p.text("id"): p for p in _items(prev)}
    r.check()

    # the item the change is about: the one whose previous state differs, else the first
    item = next((i for i in items if i.id in previous_items and _differs(i, previous_items[i.id])), None)
    item = item or (items[0] if items else None)
    before = previous_items.get(item.id) if item is not None else None
    status = _STATUS.get((status_text or "").lower(), "unknown") if status_text else None

    action: Action
    phase: Phase = "effective"
    effective_at = created
    status_after: StatusAfter | None = status
    if kind == "created":
        action = "create"
        effective_at = sub.epoch("start_date") or created
        if status_text == "incomplete":
            phase = "requested"  # first payment still outstanding
    elif kind == "deleted":
        action, status_after = "cancel", "cancelled"
        effective_at = sub.epoch("ended_at") or sub.epoch("canceled_at") or created
    elif kind == "paused":
        action, status_after = "suspend", "suspended"
    elif kind == "resumed":
        action = "reinstate"
    elif kind in ("updated", "pending_update_applied"):
        action, phase, effective_at, status_after = _classify_update(
            prev,
            item,
            before,
            created,
            status,
            cancel_at_period_end=cancel_at_period_end,
            cancel_at=cancel_at,
            period_start=period_start or (item.period_start if item else None),
            period_end=period_end or (item.period_end if item else None),
        )
    else:
        raise UnparseableInput("UNKNOWN_EVENT_TYPE", f"unknown Stripe event type {event_type!r}")

    quantity = item.quantity if item else None
    currency = item.currency if item else None
    money = line_money(
        item.reader if item else sub,
        "price",
        unit=item.unit if item else None,
        quantity=quantity,
        currency=currency,
    )
    r.check()
    change = CanonicalOrderChange(
        action=action,
        phase=phase,
        channel=CHANNEL,
        channel_subscription_id=must(subscription_id, "data.object.id"),
        channel_event_id=event_id,
        customer=customer,
        # 8a rule 8: Stripe names no separate account, so the customer's own id is the account
        account=CanonicalAccount(channel_account_id=customer.channel_customer_id),
        product=item.product if item else None,
        plan=item.price_id if item else None,
        quantity=quantity,
        billing_interval=item.interval if item else None,
        currency=currency,
        unit_amount=money.unit_amount,
        amount=money.amount,
        amount_basis=money.amount_basis,
        effective_at=effective_at,
        status_after=status_after,
        trial=(status_text == "trialing") if status_text else None,
    )
    return ChannelResult(changes=[change], version=version)


def _customer(sub: Reader) -> CanonicalCustomer:
    if isinstance(sub.raw("customer"), dict):  # expanded customer object
        c = sub.obj("customer")
        return CanonicalCustomer(channel_customer_id=c.text("id"), email=c.text("email"), name=c.text("name"))
    return CanonicalCustomer(channel_customer_id=sub.text("customer"))


def _old_price(before: Reader) -> str | None:
    """Price id of an item in ``previous_attributes`` (``plan`` on very old API versions)."""
    return before.obj("price").text("id") if before.has("price") else before.obj("plan").text("id")


def _differs(item: _Item, before: Reader) -> bool:
    old_price = _old_price(before)
    return (
        (old_price is not None and old_price != item.price_id)
        or ("quantity" in before.data and before.integer("quantity") != item.quantity)
        or (
            "current_period_start" in before.data
            and before.epoch("current_period_start") != item.period_start
        )
    )


def _classify_update(
    prev: Reader,
    item: _Item | None,
    before: Reader | None,
    created: str | None,
    status: StatusAfter | None,
    *,
    cancel_at_period_end: bool | None,
    cancel_at: str | None,
    period_start: str | None,
    period_end: str | None,
) -> tuple[Action, Phase, str | None, StatusAfter | None]:
    """What a ``customer.subscription.updated`` means, from what ``previous_attributes`` lists.

    One action per event (the most significant change wins) so the event id stays a
    one-to-one dedupe key.
    """
    if item is not None and before is not None:
        old_price = _old_price(before)
        if old_price is not None and old_price != item.price_id:
            return "change_plan", "effective", created, status
        if "quantity" in before.data and before.integer("quantity") != item.quantity:
            return "change_quantity", "effective", created, status
    was_scheduled: bool | None = None
    if "cancel_at_period_end" in prev.data:
        was_scheduled, now_scheduled = bool(prev.boolean("cancel_at_period_end")), bool(cancel_at_period_end)
    elif "cancel_at" in prev.data:  # newer API versions may schedule with cancel_at alone
        was_scheduled, now_scheduled = prev.has("cancel_at"), cancel_at is not None
    if was_scheduled is not None:
        if now_scheduled and not was_scheduled:
            return "cancel", "scheduled", cancel_at or period_end, "cancel_scheduled"
        if was_scheduled and not now_scheduled:
            return "uncancel", "effective", created, status
    item_period_moved = before is not None and "current_period_start" in before.data
    if "current_period_start" in prev.data or item_period_moved:
        return "renew", "effective", period_start or created, status
    if "status" in prev.data:
        old = (prev.text("status") or "").lower()
        if status == "suspended":
            return "suspend", "effective", created, status
        if old == "paused" and status == "active":
            return "reinstate", "effective", created, status
    return "refresh", "effective", created, status
