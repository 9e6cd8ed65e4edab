"""Order validation: may this change be accepted? Pure; every finding is a :class:`RejectionReason`.

Only changes that sell something are checked (``create``, ``change_plan``,
``change_quantity``). Cancellations, suspensions, renewals and the like are facts reported
by the channel: refusing them would only make our state wrong, so they pass unchecked.

Checks, each switchable by policy (``services.intake.domain.policy``):

* required fields: a catalog plan (``require_plan``), a quantity for quantity changes;
* customer credit (``credit_check``): credit hold; order value above the credit limit
  (the policy's ``credit_limit`` replaces the customer's stored one when set);
* availability for recurring delivery (``check_availability``): region among the plan's
  regions; quantity within stock for stock-limited plans;
* catalog rules (``check_catalog``): billing interval and currency priced by the plan,
  quantity within the plan's bounds.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, field_validator

from services.intake.domain.errors import reason
from services.intake.domain.impact import impact_score
from services.intake.domain.policy import EffectivePolicy
from services.intake.domain.pricing import order_value, price_from_catalog
from shared.catalog import Catalog, Plan
from shared.contracts.canonical import CanonicalOrderChange, RejectionReason
from shared.money import normalize_currency, to_decimal

__all__ = [
    "COMMERCIAL_ACTIONS",
    "CustomerCredit",
    "impact_score",
    "order_value",
    "price_from_catalog",
    "validate",
]

COMMERCIAL_ACTIONS = frozenset({"create", "change_plan", "change_quantity"})
_NEEDS_PLAN = frozenset({"create", "change_plan"})


class CustomerCredit(BaseModel):
    """A customer's credit standing as order management knows it."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    credit_hold: bool = False
    credit_limit: Decimal | None = None  # None = no limit
    currency: str | None = None  # currency of the credit limit

    @field_validator("credit_limit", mode="before")
    @classmethod
    def _limit(cls, v: object) -> Decimal | None:
        return None if v is None else to_decimal(v)

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str | None) -> str | None:
        return normalize_currency(v) if v else None


def validate(
    change: CanonicalOrderChange,
    *,
    catalog: Catalog,
    plan_id: str | None,
    customer: CustomerCredit | None,
    policy: EffectivePolicy,
    region: str | None,
    order_value: Decimal | None,
) -> list[RejectionReason]:
    """Every reason to refuse ``change``; an empty list accepts it.

    ``plan_id`` is the catalog plan the change maps to (:func:`mapping.resolve_plan`),
    ``customer`` the customer's credit (``None``: unknown customer, no credit check),
    ``region`` the delivery region if known, ``order_value`` the value from
    :func:`order_value` in the change's currency.
    """
    if change.action not in COMMERCIAL_ACTIONS or change.phase in ("withdrawn", "failed"):
        return []
    reasons: list[RejectionReason] = []
    plan = catalog.find(plan_id) if plan_id else None
    reasons += _required(change, plan_id, plan, policy)
    if policy.credit_check and customer is not None:
        reasons += _credit(change, customer, policy, order_value)
    if plan is not None and policy.check_availability:
        reasons += _availability(change, plan, region)
    if plan is not None and policy.check_catalog:
        reasons += _catalog_rules(change, plan)
    return reasons


def _required(
    change: CanonicalOrderChange, plan_id: str | None, plan: Plan | None, policy: EffectivePolicy
) -> list[RejectionReason]:
    out: list[RejectionReason] = []
    if change.action in _NEEDS_PLAN and policy.require_plan:
        if change.plan is None and plan_id is None:
            out.append(reason("MISSING_FIELD", "the order names no plan", "plan"))
        elif plan is None:
            shown = plan_id or change.plan
            out.append(reason("UNKNOWN_PLAN", f"plan {shown!r} is not in the catalog", "plan"))
    if change.action == "change_quantity" and change.quantity is None:
        out.append(reason("MISSING_FIELD", "a quantity change needs the new quantity", "quantity"))
    return out


def _credit(
    change: CanonicalOrderChange, customer: CustomerCredit, policy: EffectivePolicy, value: Decimal | None
) -> list[RejectionReason]:
    out: list[RejectionReason] = []
    if customer.credit_hold:
        out.append(reason("CREDIT_HOLD", f"customer {customer.customer_id} is on credit hold", "customer"))
    limit = policy.credit_limit if policy.credit_limit is not None else customer.credit_limit
    # no FX here: a limit in another currency cannot be compared, so it is not applied
    comparable = customer.currency is None or change.currency is None or customer.currency == change.currency
    if limit is not None and value is not None and comparable and value > limit:
        out.append(
            reason(
                "CREDIT_LIMIT_EXCEEDED",
                f"order value {value} exceeds the credit limit {limit} of customer {customer.customer_id}",
                "amount",
            )
        )
    return out


def _availability(change: CanonicalOrderChange, plan: Plan, region: str | None) -> list[RejectionReason]:
    out: list[RejectionReason] = []
    if region and plan.regions and region.strip().lower() not in {r.lower() for r in plan.regions}:
        out.append(
            reason(
                "REGION_UNAVAILABLE",
                f"plan {plan.id} is not delivered in region {region!r} (only {', '.join(plan.regions)})",
                "region",
            )
        )
    if plan.stock is not None:
        wanted = change.quantity if change.quantity is not None else 1
        if wanted > plan.stock:
            message = f"plan {plan.id} has {plan.stock} in stock, {wanted} ordered"
            out.append(reason("OUT_OF_STOCK", message, "quantity"))
    return out


def _catalog_rules(change: CanonicalOrderChange, plan: Plan) -> list[RejectionReason]:
    out: list[RejectionReason] = []
    interval, currency = change.billing_interval, change.currency
    if interval and interval not in plan.billing_intervals:
        allowed = ", ".join(sorted(plan.billing_intervals))
        out.append(
            reason(
                "BILLING_INTERVAL_NOT_ALLOWED",
                f"plan {plan.id} is not sold per {interval} (allowed: {allowed})",
                "billing_interval",
            )
        )
    if currency and currency not in plan.currencies:
        priced = ", ".join(sorted(plan.currencies))
        message = f"plan {plan.id} has no {currency} price (priced in {priced})"
        out.append(reason("CURRENCY_NOT_PRICED", message, "currency"))
    elif currency and interval and interval in plan.billing_intervals:
        if not any(p.currency == currency and p.billing_interval == interval for p in plan.prices):
            message = f"plan {plan.id} has no {currency} price per {interval}"
            out.append(reason("CURRENCY_NOT_PRICED", message, "currency"))
    if change.quantity is not None and not plan.quantity.min <= change.quantity <= plan.quantity.max:
        out.append(
            reason(
                "QUANTITY_OUT_OF_BOUNDS",
                f"plan {plan.id} allows {plan.quantity.min}..{plan.quantity.max}, got {change.quantity}",
                "quantity",
            )
        )
    return out
