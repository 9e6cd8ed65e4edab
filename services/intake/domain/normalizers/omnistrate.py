"""Omnistrate: marketplace fulfillment events and subscription snapshots.

* MarketplaceEvent (``eventType``, ``marketplaceContractId``): keyed on the contract id,
  deduped on ``eventId``, ordered by ``contractVersion`` (a lower version than the last
  applied one is stale). ``plan.commitAmount`` is a decimal string for the contract term.
* Subscription snapshot (``FleetDescribeSubscriptionResult``: ``id``, ``status``,
  ``serviceId`` ...): keyed on the Omnistrate subscription id. ``transport.previous_status``
  or ``transport.known_subscription`` (what the receiver knows) maps the snapshot by
  8a rule 9 (not seen -> create, pending -> activate, otherwise refresh); with neither, the
  snapshot was not seen before (create).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.intake.domain.errors import UnparseableInput
from services.intake.domain.normalizers.base import ChannelResult, Context, line_money
from services.intake.domain.snapshots import NOT_SEEN, Known, known_from_transport, snapshot_step
from services.intake.domain.users import merged, named
from services.intake.domain.wire import Reader, load_object, must
from shared.contracts.canonical import (
    Action,
    CanonicalAccount,
    CanonicalCustomer,
    CanonicalOrderChange,
    Phase,
    StatusAfter,
)

CHANNEL = "omnistrate"

# fulfillmentState -> (action, phase, status) for event types without a documented meaning
_FULFILLMENT: dict[str, tuple[Action, Phase, StatusAfter]] = {
    "DISCOVERED": ("refresh", "effective", "pending"),
    "IDENTIFIED": ("refresh", "effective", "pending"),
    "AWAITING_ISV": ("refresh", "effective", "pending"),
    "READY": ("activate", "effective", "active"),
    "SUSPENDED": ("suspend", "effective", "suspended"),
    "DEPROVISIONING": ("cancel", "scheduled", "cancel_scheduled"),
    "CLOSED": ("cancel", "effective", "cancelled"),
}
# subscription status -> status_after; only ACTIVE is observed, the rest follows the
# suspend/resume/terminate operations Omnistrate offers. The action comes from 8a rule 9.
_SUBSCRIPTION: dict[str, StatusAfter] = {
    "ACTIVE": "active",
    "SUSPENDED": "suspended",
    "TERMINATED": "cancelled",
    "DELETED": "cancelled",
    "CANCELLED": "cancelled",
    "PENDING": "pending",
}


def normalize(body: bytes, ctx: Context) -> ChannelResult:
    """Normalize an Omnistrate marketplace event or subscription snapshot."""
    doc = load_object(body)
    if "eventType" in doc or "marketplaceContractId" in doc:
        return _event(Reader(doc))
    if "id" in doc and ("status" in doc or "productTierId" in doc):
        return _snapshot(Reader(doc), ctx)
    raise UnparseableInput("UNKNOWN_SHAPE", "not an Omnistrate marketplace event or subscription")


def _event(r: Reader) -> ChannelResult:
    event_type = r.text("eventType", required=True)
    contract_id = r.text("marketplaceContractId", required=True)
    event_id = r.text("eventId")
    version = r.integer("contractVersion")
    occurred_at = r.timestamp("occurredAt")
    test = (r.text("channel") or "").upper() == "SANDBOX"  # simulated marketplace
    state = (r.text("fulfillmentState") or "").upper()
    plan = r.obj("plan")
    plan_ref = plan.text("planRef")
    quantity = plan.integer("quantity", minimum=0)
    currency = plan.currency("currency")
    commit = plan.decimal("commitAmount")
    starts_at = plan.timestamp("startsAt")
    org = r.obj("org")
    request = r.obj("subscriptionRequest")
    r.check()
    kind = must(event_type, "eventType").lower()
    action: Action
    phase: Phase
    status_after: StatusAfter
    product: str | None = None
    effective_at = occurred_at
    if kind == "contract.discovered":
        action, phase, status_after = "create", "requested", "pending"
        product = request.text("serviceId")  # the request to approve names the service
        effective_at = starts_at or occurred_at
    elif kind == "fulfillment.failed":
        # an orphaned contract: the request was never approved, so nothing is being served
        action, phase, status_after = "create_failed", "failed", "failed"
    elif state in _FULFILLMENT:
        action, phase, status_after = _FULFILLMENT[state]  # eventType enum is not documented
    else:
        raise UnparseableInput("UNKNOWN_EVENT_TYPE", f"unknown Omnistrate eventType {event_type!r}")
    money = line_money(
        plan, "commitAmount", total=commit, quantity=None, currency=currency, basis="contract_commit"
    )
    r.check()
    change = CanonicalOrderChange(
        action=action,
        phase=phase,
        channel=CHANNEL,
        channel_subscription_id=must(contract_id, "marketplaceContractId"),
        channel_event_id=event_id,
        customer=CanonicalCustomer(channel_customer_id=org.text("orgId")),
        # 8a rule 8: no buyer reference -> the organization's own id
        account=CanonicalAccount(channel_account_id=r.text("buyerRef") or org.text("orgId")),
        product=product,
        plan=plan_ref,
        quantity=quantity,
        currency=currency,
        amount=money.amount,
        amount_basis=money.amount_basis,
        effective_at=effective_at,
        status_after=status_after,
        test=test,
    )
    return ChannelResult(changes=[change], version=version)


def _known(transport: Mapping[str, Any]) -> Known | None:
    """What the receiver knows: ``known_subscription`` (worker), else ``previous_status`` (stateless)."""
    known = known_from_transport(transport)
    if known is not None or "previous_status" not in transport:
        return known
    previous = transport.get("previous_status")
    if not isinstance(previous, str) or not previous.strip():
        return NOT_SEEN
    mapped = _SUBSCRIPTION.get(previous.strip().upper())
    return Known(seen=True, status=mapped or "unknown")


def _snapshot(r: Reader, ctx: Context) -> ChannelResult:
    subscription_id = r.text("id", required=True)
    status = (r.text("status") or "").upper()
    org_id = r.text("rootUserOrgId")
    root_user = r.text("rootUserId")
    customer = CanonicalCustomer(
        channel_customer_id=org_id or root_user,
        email=r.text("rootUserEmail"),
        name=r.text("rootUserName"),
    )
    effective_at = r.timestamp("updatedAt") or r.timestamp("createdAt")
    product = r.text("serviceId")
    plan = r.text("productTierId")
    r.check()
    # 8a rule 3: no status carried at all -> null; a status not recognised -> unknown
    status_after: StatusAfter | None = _SUBSCRIPTION.get(status, "unknown") if status else None
    # 8a rule 9: a snapshot maps by what the receiver already knows of the subscription; with
    # no knowledge at all (no receiver record, no previous status) it was not seen before
    known = _known(ctx.transport) or NOT_SEEN
    action, phase = snapshot_step(status_after, known)
    change = CanonicalOrderChange(
        action=action,
        phase=phase,
        channel=CHANNEL,
        channel_subscription_id=must(subscription_id, "id"),
        customer=customer,
        users=merged([named(customer.email, "owner", "root_user")]),
        # 8a rule 8: without an organization, the root user's own id is the account
        account=CanonicalAccount(channel_account_id=org_id or root_user),
        product=product,
        plan=plan,
        effective_at=effective_at,
        status_after=status_after,
    )
    return ChannelResult(changes=[change])
