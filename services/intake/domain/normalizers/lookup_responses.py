"""Vendor lookup responses read as intake payloads (FORMATS.md 8a, rule 9).

Each channel's normalizer hands a document of a recognised lookup shape to this module:

* GCP ``providers.entitlements.get``: the entitlement resource;
* AWS ``GetEntitlements``: ``{"Entitlements": [...]}``;
* Shopify Admin GraphQL: ``{"data": {"subscriptionContract": {...}}}``;
* STACKIT ``ListSubscriptions``: a page ``{"items": [...], "cursor": ...}`` (one change per item).

A snapshot maps by what the receiver already knows of the subscription, from the transport:
``known_status`` (``null`` or absent: never seen -> ``create``; ``pending`` and now active ->
``activate``; otherwise ``refresh``), all with phase ``effective``. For a STACKIT page,
``known_states`` maps each ``subscriptionId`` to its previous ``lifecycleState``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from services.intake.domain.amounts import AmountError, multiply, render
from services.intake.domain.normalizers.base import ChannelResult, Context
from services.intake.domain.timefmt import interval_duration, parse_timestamp
from services.intake.domain.wire import Reader, must
from shared.contracts.canonical import (
    Action,
    CanonicalAccount,
    CanonicalCustomer,
    CanonicalOrderChange,
    Phase,
    StatusAfter,
)

_GCP_STATES: dict[str, StatusAfter] = {
    "ENTITLEMENT_ACTIVATION_REQUESTED": "pending",
    "ENTITLEMENT_ACTIVE": "active",
    "ENTITLEMENT_PENDING_CANCELLATION": "cancel_scheduled",  # rule 10: auto-renewal off
    "ENTITLEMENT_CANCELLED": "cancelled",
    "ENTITLEMENT_PENDING_PLAN_CHANGE": "active",
    "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL": "active",
    "ENTITLEMENT_SUSPENDED": "suspended",
}
_SHOPIFY_STATES: dict[str, StatusAfter] = {
    "ACTIVE": "active",
    "PAUSED": "suspended",
    "CANCELLED": "cancelled",
    "EXPIRED": "cancelled",
    "FAILED": "failed",
}


def snapshot_action(known: Any, status_after: StatusAfter | None) -> tuple[Action, Phase]:
    """Rule 9: what a snapshot means given what the receiver knew of the subscription."""
    if known is None or known == "":
        return "create", "effective"
    if str(known).lower() == "pending" and status_after in ("active", "trialing"):
        return "activate", "effective"
    return "refresh", "effective"


def _last_segment(path: str | None) -> str | None:
    return path.rstrip("/").rsplit("/", 1)[-1] or None if path else None


def is_gcp_entitlement(doc: Mapping[str, Any]) -> bool:
    """A ``providers.entitlements`` resource (``name`` is its resource path)."""
    name = doc.get("name")
    return isinstance(name, str) and "/entitlements/" in name and "eventType" not in doc


def gcp_entitlement(doc: dict[str, Any], ctx: Context) -> ChannelResult:
    """An entitlement resource: a create, activate or refresh, or a scheduled plan change."""
    r = Reader(doc)
    name = r.text("name", required=True)
    state = (r.text("state") or "").upper()
    plan = r.text("plan")
    pending_plan = r.text("newPendingPlan")
    external = r.text("productExternalName")
    product_path = r.text("product")
    account = _last_segment(r.text("account"))
    updated = r.timestamp("updateTime") or r.timestamp("createTime")
    offer_start = r.timestamp("newOfferStartTime")
    offer = r.text("offer")
    r.check()
    # Rule 7: productExternalName, else only a path that names a product.
    product = external or (
        _last_segment(product_path) if product_path and "/products/" in f"/{product_path}" else None
    )
    if product is None and product_path and "/" not in product_path:
        product = product_path
    status: StatusAfter | None = _GCP_STATES.get(state, "unknown") if state else None
    action, phase = snapshot_action(ctx.transport.get("known_status"), status)
    effective = updated
    if state == "ENTITLEMENT_PENDING_PLAN_CHANGE" and offer_start and pending_plan:
        if updated is None or parse_timestamp(offer_start, assume_utc=False) > parse_timestamp(
            updated, assume_utc=False
        ):
            action, phase, plan, effective = "change_plan", "scheduled", pending_plan, offer_start
    change = CanonicalOrderChange(
        action=action,
        phase=phase,
        channel="gcp_marketplace",
        channel_subscription_id=must(_last_segment(name), "name"),
        customer=CanonicalCustomer(channel_customer_id=account),
        account=CanonicalAccount(channel_account_id=account),
        product=product,
        plan=plan,
        offer_id=_last_segment(offer),
        effective_at=effective,
        status_after=status,
    )
    return ChannelResult(changes=[change])


def is_aws_entitlements(doc: Mapping[str, Any]) -> bool:
    """A ``GetEntitlements`` response."""
    return isinstance(doc.get("Entitlements"), list)


def aws_entitlements(doc: dict[str, Any], ctx: Context) -> ChannelResult:
    """``GetEntitlements``: one change per customer and product (dimension = plan, value = quantity)."""
    changes: list[CanonicalOrderChange] = []
    seen: set[str] = set()
    for item in Reader(doc).objs("Entitlements"):
        customer = item.text("CustomerIdentifier", required=True)
        product = item.text("ProductCode", required=True)
        dimension = item.text("Dimension")
        account = item.text("CustomerAWSAccountId")
        value = item.obj("Value")
        quantity = value.integer("IntegerValue", minimum=0)
        item.epoch("ExpirationDate")  # checked for shape; the end comes with unsubscribe events
        item.check()
        sid = f"{must(product, 'ProductCode')}:{must(customer, 'CustomerIdentifier')}"
        if sid in seen:  # several dimensions of one customer: the first names the plan
            continue
        seen.add(sid)
        status: StatusAfter = "active"
        action, phase = snapshot_action(ctx.transport.get("known_status"), status)
        changes.append(
            CanonicalOrderChange(
                action=action,
                phase=phase,
                channel="aws_marketplace",
                channel_subscription_id=sid,
                customer=CanonicalCustomer(channel_customer_id=customer),
                account=CanonicalAccount(channel_account_id=account or customer),
                product=product,
                plan=dimension,
                quantity=quantity or None,
                effective_at=None,  # a snapshot has no instant of its own (rule 6: the receipt time)
                status_after=status,
            )
        )
    if not changes:
        return ChannelResult(ignored="GetEntitlements returned no entitlement")
    return ChannelResult(changes=changes)


def is_aws_agreement_terms(doc: Mapping[str, Any]) -> bool:
    """A ``GetAgreementTerms`` response (the client adds the ``agreementId`` it asked about)."""
    return isinstance(doc.get("acceptedTerms"), list)


# GetAgreementTerms billing periods -> ISO 8601 durations.
_AWS_PERIODS = {"MONTHLY": "P1M", "ANNUAL": "P1Y", "YEARLY": "P1Y"}


def _aws_term(terms: list[Reader], name: str) -> Reader | None:
    for term in terms:
        if isinstance(term.raw(name), dict):
            return term.obj(name)
    return None


def aws_agreement_terms(doc: dict[str, Any], ctx: Context) -> ChannelResult:
    """``GetAgreementTerms``: the agreement's prices as a ``refresh`` of the agreement (ids: ``agmt-...``).

    Which term prices the subscription, first found wins:

    * ``recurringPaymentTerm``: ``price`` per ``billingPeriod`` -> ``per_interval``;
    * ``configurableUpfrontPricingTerm``: the rate card whose selector is the configuration's
      ``selectorValue`` (a duration), times each configured ``dimensionValue``; the first dimension is
      the plan and its value the quantity -> ``contract_commit`` for that duration;
    * ``fixedUpfrontPricingTerm``: ``price`` for ``duration`` -> ``contract_commit``.

    Usage-based terms price metering, not the subscription: they fill nothing. Amounts are decimal
    strings at AWS and stay exact (``Decimal``).
    """
    r = Reader(doc)
    agreement = r.text("agreementId", required=True)
    terms = r.objs("acceptedTerms")
    fields: dict[str, Any] = {}
    recurring = _aws_term(terms, "recurringPaymentTerm")
    upfront = _aws_term(terms, "configurableUpfrontPricingTerm")
    fixed = _aws_term(terms, "fixedUpfrontPricingTerm")
    try:
        if recurring is not None:
            currency = recurring.currency("currencyCode", required=True)
            price = recurring.decimal("price", required=True)
            period = (recurring.text("billingPeriod") or "").upper()
            if price is not None:
                fields = {
                    "currency": currency,
                    "amount": render(price, currency),
                    "amount_basis": "per_interval",
                    "billing_interval": _AWS_PERIODS.get(period),
                }
        elif upfront is not None:
            currency = upfront.currency("currencyCode", required=True)
            config = upfront.obj("configuration")
            selector = config.text("selectorValue")
            chosen = [
                (d.text("dimensionKey"), d.integer("dimensionValue", minimum=0))
                for d in config.objs("dimensions")
            ]
            prices: dict[str, Decimal] = {}
            for card in upfront.objs("rateCards"):
                if card.obj("selector").text("value") != selector:
                    continue
                for rate in card.objs("rateCard"):
                    key, value = rate.text("dimensionKey"), rate.decimal("price")
                    if key is not None and value is not None:
                        prices[key] = value
            total = Decimal(0)
            for key, count in chosen:
                if key in prices and count:
                    total += multiply(prices[key], count)
            if chosen and chosen[0][0] in prices:
                plan, quantity = chosen[0]
                fields = {
                    "plan": plan,
                    "quantity": quantity or None,
                    "currency": currency,
                    "unit_amount": render(prices[str(plan)], currency),
                    "amount": render(total, currency),
                    "amount_basis": "contract_commit",
                    "billing_interval": selector,
                }
        elif fixed is not None:
            currency = fixed.currency("currencyCode", required=True)
            price = fixed.decimal("price", required=True)
            if price is not None:
                fields = {
                    "currency": currency,
                    "amount": render(price, currency),
                    "amount_basis": "contract_commit",
                    "billing_interval": fixed.text("duration"),
                }
    except AmountError as exc:
        r.amount_error("acceptedTerms", exc)
    r.check()
    if not fields:
        return ChannelResult(ignored=f"GetAgreementTerms of {agreement}: no term prices the subscription")
    action, phase = snapshot_action(ctx.transport.get("known_status"), "active")
    # terms alone never create a subscription: they refresh what the agreement's event created
    if action == "create":
        action = "refresh"
    change = CanonicalOrderChange(
        action=action,
        phase=phase,
        channel="aws_marketplace",
        channel_subscription_id=must(agreement, "agreementId"),
        customer=CanonicalCustomer(),
        account=CanonicalAccount(),
        effective_at=None,
        status_after=None,
        **fields,
    )
    return ChannelResult(changes=[change])


def is_shopify_contract(doc: Mapping[str, Any]) -> bool:
    """An Admin GraphQL response with a ``subscriptionContract``."""
    data = doc.get("data")
    return isinstance(data, dict) and "subscriptionContract" in data


def shopify_contract(doc: dict[str, Any], ctx: Context) -> ChannelResult:
    """``subscriptionContract``: plan and quantity from its first line, amount = sum of lines."""
    data = Reader(doc).obj("data")
    if data.raw("subscriptionContract") is None:
        return ChannelResult(ignored="GraphQL: no such subscription contract")
    c = data.obj("subscriptionContract")
    contract_id = c.text("id", required=True)
    status_text = (c.text("status") or "").upper()
    policy = c.obj("billingPolicy")
    unit = policy.text("interval")
    count = policy.integer("intervalCount", minimum=1) or 1
    customer = c.obj("customer")
    customer_id, email = customer.text("id"), customer.text("email")
    currency = c.currency("currencyCode")
    lines = c.obj("lines").objs("nodes")
    first: dict[str, Any] = {}
    total = Decimal(0)
    for i, line in enumerate(lines):
        quantity = line.integer("quantity", minimum=0) or 0
        price = line.obj("currentPrice")
        amount = price.decimal("amount")
        currency = currency or price.currency("currencyCode")
        if amount is not None:
            try:
                total += multiply(amount, quantity)
            except AmountError as exc:
                price.amount_error("amount", exc)
        if i == 0:
            first = {
                "plan": line.text("sku") or line.text("sellingPlanName") or line.text("variantId"),
                "product": line.text("productId"),
                "quantity": quantity or None,
                "unit": amount,
            }
    c.check()
    status: StatusAfter | None = _SHOPIFY_STATES.get(status_text, "unknown") if status_text else None
    action, phase = snapshot_action(ctx.transport.get("known_status"), status)
    unit_amount = amount_total = None
    try:
        unit_amount = render(first["unit"], currency) if first.get("unit") is not None else None
        amount_total = render(total, currency) if lines else None
    except AmountError as exc:
        c.amount_error("lines", exc)
        c.check()
    change = CanonicalOrderChange(
        action=action,
        phase=phase,
        channel="shopify",
        channel_subscription_id=must(contract_id, "id"),
        customer=CanonicalCustomer(channel_customer_id=customer_id, email=email),
        account=CanonicalAccount(channel_account_id=ctx.header("X-Shopify-Shop-Domain")),
        product=first.get("product"),
        plan=first.get("plan"),
        quantity=first.get("quantity"),
        billing_interval=interval_duration(unit.lower(), count) if unit else None,
        currency=currency,
        unit_amount=unit_amount,
        amount=amount_total,
        amount_basis="per_interval" if amount_total is not None else None,
        status_after=status,
    )
    return ChannelResult(changes=[change])


def is_stackit_page(doc: Mapping[str, Any]) -> bool:
    """A ``ListSubscriptions`` page."""
    return isinstance(doc.get("items"), list) and "lifecycleState" not in doc


def stackit_page(
    doc: dict[str, Any], ctx: Context, single: Callable[[bytes, Context], ChannelResult]
) -> ChannelResult:
    """One change per subscription of the page, each read by the single-snapshot normalizer ``single``."""
    known = ctx.transport.get("known_states")
    known = known if isinstance(known, Mapping) else {}
    changes: list[CanonicalOrderChange] = []
    for item in doc.get("items") or []:
        if not isinstance(item, dict):
            continue
        previous = known.get(str(item.get("subscriptionId")))
        transport = {"previous_snapshot_lifecycleState": previous}
        result = single(json.dumps(item).encode(), Context(ctx.channel, transport, ctx.catalog))
        changes.extend(result.changes)
    if not changes:
        return ChannelResult(ignored="STACKIT list page without a change")
    return ChannelResult(changes=changes)
