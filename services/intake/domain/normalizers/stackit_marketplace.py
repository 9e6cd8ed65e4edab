"""STACKIT Marketplace vendor API: polled Subscription objects.

STACKIT has no webhooks; a poller (see :mod:`services.intake.domain.stackit`) publishes a
subscription object whenever it differs from the stored snapshot, with the poll context in
the transport:

* ``previous_snapshot_lifecycleState``: the state at the previous poll (``null``: first seen);
* ``previous_snapshot_validUntil``: the previous validity end (to recognise a renewal);
* ``previous_snapshot_autoRenewal``: the previous ``autoRenewal`` (turned off while active:
  the subscription ends with its term, 8a rule 10);
* ``replaces_subscription``: ``{"subscriptionId", "terminatesAt"}`` of the CANCELLING
  subscription of the same organization/project/product that a new PENDING one replaces
  (a STACKIT plan change is a cancel plus a new subscription id).

The action is the observed state transition. ``rate`` is a per-unit price without currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from services.intake.domain.amounts import AmountError, render
from services.intake.domain.errors import UnparseableInput
from services.intake.domain.normalizers import lookup_responses
from services.intake.domain.normalizers.base import ChannelResult, Context
from services.intake.domain.timefmt import format_ms, normalize_duration, parse_timestamp
from services.intake.domain.wire import Reader, load_object, must
from shared.contracts.canonical import (
    Action,
    CanonicalAccount,
    CanonicalCustomer,
    CanonicalOrderChange,
    Phase,
    StatusAfter,
)

CHANNEL = "stackit_marketplace"

PENDING = "SUBSCRIPTION_PENDING"
ACTIVE = "SUBSCRIPTION_ACTIVE"
INACTIVE = "SUBSCRIPTION_INACTIVE"
CANCELLING = "SUBSCRIPTION_CANCELLING"
CANCELLED = "SUBSCRIPTION_CANCELLED"
REJECTED = "SUBSCRIPTION_REJECTED"
TIMED_OUT = "SUBSCRIPTION_APPROVAL_TIMED_OUT"

_STATUS: dict[str, StatusAfter] = {
    PENDING: "pending",
    ACTIVE: "active",
    INACTIVE: "suspended",  # meaning undocumented; assumed
    CANCELLING: "cancel_scheduled",
    CANCELLED: "cancelled",
    REJECTED: "failed",
    TIMED_OUT: "failed",
}


def state_name(value: Any) -> str | None:
    """Canonical spelling of a lifecycle state (trimmed, upper case, ``SUBSCRIPTION_`` prefix)."""
    if not isinstance(value, str) or not value.strip():
        return None
    name = value.strip().upper()
    if name != "STATE_UNSPECIFIED" and not name.startswith("SUBSCRIPTION_"):
        name = f"SUBSCRIPTION_{name}"
    return name


def start_after(terminates_at: str) -> str:
    """When a successor starts, given the predecessor's ``terminatesAt``.

    STACKIT prints the last valid second (``2025-10-31T23:59:59Z``), so the successor starts
    at the next whole second (``2025-11-01T00:00:00.000Z``). An end already on a whole
    minute is taken as exclusive and returned unchanged.
    """
    end = parse_timestamp(terminates_at, assume_utc=False)
    if end.second == 59:
        try:
            end = end.replace(microsecond=0) + timedelta(seconds=1)
        except OverflowError as exc:  # 9999-12-31T23:59:59Z has no next second
            raise ValueError(f"no instant after {terminates_at!r}") from exc
    return format_ms(end)


def renewal_start(valid_from: str | None, previous_until: str | None) -> str | None:
    """When a renewed period starts (8a rule 4: at the NEW period's start, never the old end).

    The new ``validFrom`` when it lies after the previous ``validUntil``; otherwise the
    instant after the previous ``validUntil`` (STACKIT prints the last valid second).
    """
    if valid_from and previous_until and valid_from > previous_until:  # same format: sortable
        return valid_from
    if previous_until:
        return start_after(previous_until)
    return valid_from


def _transition(
    previous: str | None, current: str, moved_validity: bool, renewal: tuple[bool | None, bool | None]
) -> tuple[Action, Phase] | None:
    """(action, phase) of the move from ``previous`` to ``current``; ``None``: nothing happened.

    ``renewal`` is (previous, current) ``autoRenewal``.
    """
    if previous == current:
        if current == ACTIVE and moved_validity:
            return "renew", "effective"
        was, now = renewal
        if current == ACTIVE and was is not None and now is not None and was != now:
            return ("uncancel", "effective") if now else ("cancel", "scheduled")
        return None
    if current == PENDING:
        return ("create", "requested") if previous is None else ("refresh", "effective")
    if current == ACTIVE:
        if previous is None:
            return "create", "effective"  # first seen already active (the poller started late)
        if previous == INACTIVE:
            return "reinstate", "effective"
        if previous == CANCELLING:
            return "uncancel", "effective"
        return "activate", "effective"
    if current == CANCELLING:
        return "cancel", "scheduled"
    if current == CANCELLED:
        return "cancel", "effective"
    if current in (REJECTED, TIMED_OUT):
        return "create_failed", "failed"
    if current == INACTIVE:
        return "suspend", "effective"
    return "refresh", "effective"  # STATE_UNSPECIFIED or a state added later


def normalize(body: bytes, ctx: Context) -> ChannelResult:
    """Normalize a polled STACKIT subscription object with its poll context."""
    doc = load_object(body)
    if lookup_responses.is_stackit_page(doc):  # a ListSubscriptions page: one change per item
        return lookup_responses.stackit_page(doc, ctx, normalize)
    if "subscriptionId" not in doc and "lifecycleState" not in doc:
        raise UnparseableInput("UNKNOWN_SHAPE", "not a STACKIT subscription object")
    r = Reader(doc)
    subscription_id = r.text("subscriptionId", required=True)
    state_text = r.text("lifecycleState", required=True)
    ordered_at = r.timestamp("orderedAt")
    valid_from = r.timestamp("validFrom")
    valid_until = r.timestamp("validUntil")
    terminates_at = r.timestamp("terminatesAt")
    product = r.obj("product")
    product_id = product.text("productId")
    plan_id = product.text("planId")
    rate = product.decimal("rate")
    validity = product.text("validityPeriod")
    price_type = (product.text("priceType") or "").upper()
    t = Reader(ctx.transport, "transport", r.errors)
    previous_until = t.timestamp("previous_snapshot_validUntil")
    auto_renewal = r.boolean("autoRenewal")
    previous_auto_renewal = t.boolean("previous_snapshot_autoRenewal")
    replaces = _replaces(t)
    unit_amount: str | None = None
    if rate is not None:
        try:
            unit_amount = render(rate, None)  # no currency field: keep the digits as sent
        except AmountError as exc:
            product.amount_error("rate", exc)
    r.check()
    current = must(state_name(state_text), "lifecycleState")
    previous = state_name(ctx.transport.get("previous_snapshot_lifecycleState"))
    moved = bool(valid_until and previous_until and valid_until > previous_until)  # same format: sortable
    step = _transition(previous, current, moved, (previous_auto_renewal, auto_renewal))
    if step is None:
        return ChannelResult(duplicate=f"STACKIT subscription {subscription_id} has not changed")
    action, phase = step
    replaced_id: str | None = None
    effective_at: str | None
    if action == "create":
        effective_at = ordered_at if phase == "requested" else valid_from or ordered_at
        if replaces is not None:
            # a new subscription for the same org/project/product while the old one is cancelling
            action, replaced_id = "change_plan", replaces[0]
            effective_at = replaces[1] or effective_at
    elif action == "activate" or action == "reinstate" or action == "uncancel":
        effective_at = valid_from if action == "activate" else None
    elif action == "renew":
        effective_at = renewal_start(valid_from, previous_until)
    elif action == "cancel" and current == ACTIVE:  # auto-renewal turned off: ends with the term
        effective_at = terminates_at or (start_after(valid_until) if valid_until else None)
    elif action == "cancel":
        effective_at = terminates_at or valid_until
    else:
        effective_at = None
    change = CanonicalOrderChange(
        action=action,
        phase=phase,
        channel=CHANNEL,
        channel_subscription_id=must(subscription_id, "subscriptionId"),
        replaces_channel_subscription_id=replaced_id,
        customer=CanonicalCustomer(channel_customer_id=r.text("organizationId")),
        account=CanonicalAccount(channel_account_id=r.text("projectId")),
        product=product_id,
        plan=plan_id,
        billing_interval=normalize_duration(validity) if validity else None,  # format assumed ISO 8601
        unit_amount=unit_amount,
        effective_at=effective_at,
        status_after=_status_after(current, trial=price_type == "FREE_TRIAL", auto_renewal=auto_renewal),
        trial=True if price_type == "FREE_TRIAL" else None,
    )
    return ChannelResult(changes=[change])


def _status_after(current: str, *, trial: bool, auto_renewal: bool | None) -> StatusAfter:
    """8a rules 2 and 10: an active free trial is ``trialing``; active without auto-renewal ends."""
    status = _STATUS.get(current, "unknown")
    if status == "active" and auto_renewal is False:
        return "cancel_scheduled"
    if status == "active" and trial:
        return "trialing"
    return status


def _replaces(t: Reader) -> tuple[str, str | None] | None:
    """(replaced subscription id, start of the successor) from ``transport.replaces_subscription``."""
    raw = t.raw("replaces_subscription")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        t.wrong_type("replaces_subscription", "an object")
        return None
    old = t.obj("replaces_subscription")
    old_id = old.text("subscriptionId", required=True)
    ends = old.text("terminatesAt")
    start: str | None = None
    if ends:
        try:
            start = start_after(ends)
        except ValueError as exc:
            old.fail("INVALID_TIMESTAMP", "terminatesAt", str(exc))
    return (old_id, start) if old_id else None
