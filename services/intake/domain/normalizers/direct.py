"""The project's own ``direct`` channel: a :class:`DirectOrder` document.

Kept deliberately simple: the walking skeleton depends on it. The plan is a catalog plan
id; unit price and amount are filled from the catalog (the producer never sends prices).
"""

from __future__ import annotations

from pydantic import ValidationError

from services.intake.domain.amounts import AmountError, multiply, render
from services.intake.domain.errors import InvalidOrder, reason
from services.intake.domain.normalizers.base import ChannelResult, Context
from services.intake.domain.pricing import price_from_catalog
from services.intake.domain.timefmt import parse_timestamp, to_rfc3339_ms
from services.intake.domain.wire import load_object
from shared.catalog import Catalog, cached_catalog
from shared.contracts.canonical import (
    Action,
    CanonicalAccount,
    CanonicalCustomer,
    CanonicalOrderChange,
    DirectOrder,
    Phase,
    RejectionReason,
    StatusAfter,
)

CHANNEL = "direct"

_STATUS: dict[Action, StatusAfter] = {
    "create": "active",
    "activate": "active",
    "change_plan": "active",
    "change_quantity": "active",
    "suspend": "suspended",
    "reinstate": "active",
    "cancel": "cancelled",
    "uncancel": "active",
    "renew": "active",
    "refresh": "unknown",
    "create_failed": "failed",
}


def validation_reasons(exc: ValidationError) -> list[RejectionReason]:
    """Rejection reasons of a pydantic validation error (missing vs wrong type vs bad value)."""
    out: list[RejectionReason] = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err.get("loc", ())) or None
        kind = str(err.get("type", ""))
        if kind == "missing":
            code = "MISSING_FIELD"
        elif kind in ("value_error", "literal_error", "enum", "greater_than_equal", "string_too_short"):
            code = "INVALID_VALUE"
        else:
            code = "INVALID_TYPE"
        out.append(reason(code, str(err.get("msg", "invalid")), path))
    return out


def parse_direct(body: bytes) -> DirectOrder:
    """The :class:`DirectOrder` in ``body``; :class:`InvalidOrder` when fields are missing or wrong."""
    doc = load_object(body)
    try:
        return DirectOrder.model_validate(doc)
    except ValidationError as exc:
        raise InvalidOrder(validation_reasons(exc)) from exc


def to_change(order: DirectOrder, catalog: Catalog) -> CanonicalOrderChange:
    """The canonical change a direct order means, priced from ``catalog``."""
    try:
        effective = parse_timestamp(order.effective_at, assume_utc=False)
        effective_at = to_rfc3339_ms(order.effective_at)
    except ValueError as exc:
        raise InvalidOrder([reason("INVALID_TIMESTAMP", str(exc), "effective_at")]) from exc
    plan = catalog.find(order.plan)
    unit = price_from_catalog(catalog, order.plan, order.currency, order.billing_interval, effective.date())
    unit_amount = amount = None
    if unit is not None:
        try:
            unit_amount = render(unit, order.currency)
            amount = render(multiply(unit, order.quantity), order.currency)
        except AmountError as exc:
            raise InvalidOrder([reason("INVALID_AMOUNT", str(exc), "quantity")]) from exc
    phase: Phase = "failed" if order.action == "create_failed" else order.phase
    status: StatusAfter = _STATUS[order.action]
    if order.action == "create" and order.trial:
        status = "trialing"
    if order.action == "cancel" and phase == "scheduled":
        status = "cancel_scheduled"
    return CanonicalOrderChange(
        action=order.action,
        phase=phase,
        channel=CHANNEL,
        channel_subscription_id=order.subscription_id or order.order_id,
        channel_event_id=order.order_id,
        customer=CanonicalCustomer(
            channel_customer_id=order.customer.id,
            email=order.customer.email,
            name=order.customer.name,
            country=order.customer.country,
        ),
        account=CanonicalAccount(channel_account_id=order.account_id),
        product=plan.product if plan else None,
        plan=order.plan,
        quantity=order.quantity,
        billing_interval=order.billing_interval,
        currency=order.currency,
        unit_amount=unit_amount,
        amount=amount,
        amount_basis="per_interval" if amount is not None else None,
        effective_at=effective_at,
        status_after=status,
        trial=order.trial,
        test=order.test,
    )


def normalize(body: bytes, ctx: Context) -> ChannelResult:
    """Normalize a direct order (prices from the context's catalog, else the packaged one)."""
    order = parse_direct(body)
    return ChannelResult(changes=[to_change(order, ctx.catalog or cached_catalog())])
