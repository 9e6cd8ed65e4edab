"""The outbound half of the marketplace channels, decided without I/O: which vendor call a lifecycle
change (or a refused command) asks for.

Each call is keyed by ``(channel, operation_id, action)``; the intake store has a unique key on it, so
a redelivered lifecycle event records nothing new, and an operation gets one decision only (``action``
names the kind of call, not the verdict: an Azure operation is PATCHed once, ``Success`` or
``Failure``, whichever the lifecycle decided first). The delivery task (``services/intake/vendors``)
makes the calls; this module only decides them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Channels with an outbound half.
FULFILMENT_CHANNELS: tuple[str, ...] = (
    "azure_marketplace",
    "gcp_marketplace",
    "stackit_marketplace",
    "aws_marketplace",
)
# Lifecycle events that mean "the subscription is approved and provisioned".
_STARTED = ("SubscriptionActivated", "TrialStarted")
_STARTING_COMMANDS = ("create", "approve")
# Lifecycle events that accept a channel's requested change.
_ACCEPTS = ("PlanChanged", "PlanChangeScheduled", "QuantityChanged", "SubscriptionReactivated")


@dataclass(frozen=True)
class VendorCall:
    """One call the vendor waits for.

    ``operation_id``: the vendor's id of what is answered (Azure operation id, GCP entitlement or
    event id, STACKIT subscription id, AWS usage record); ``deadline``: when the vendor stops waiting.
    """

    channel: str
    operation_id: str
    action: str
    subscription_id: str
    channel_subscription_id: str
    body: Mapping[str, Any] = field(default_factory=dict)
    deadline: datetime | None = None


@dataclass(frozen=True)
class FulfilmentOptions:
    """Configuration of the decisions: deadlines and which AWS plans are metered (plan -> dimension)."""

    azure_patch_deadline_seconds: float = 10.0
    aws_final_meter_seconds: float = 3600.0
    aws_metered_dimensions: Mapping[str, str] = field(default_factory=dict)


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return None


def _requested(order: Mapping[str, Any] | None, *actions: str) -> bool:
    """True when ``order`` is a channel request (phase ``requested``) of one of ``actions``."""
    if not order:
        return False
    return order.get("action") in actions and order.get("phase") == "requested"


def calls_for_event(
    channel: str,
    *,
    subscription_id: str,
    channel_subscription_id: str,
    event: Mapping[str, Any],
    snapshot: Mapping[str, Any],
    order: Mapping[str, Any] | None,
    origin: Mapping[str, Any] | None,
    options: FulfilmentOptions,
    approval_deadline: datetime | None = None,
) -> list[VendorCall]:
    """The vendor calls one lifecycle domain event asks for.

    ``order``: the channel order (canonical) whose command caused the event, if it came from the
    channel; ``origin``: the channel order that created the subscription; ``approval_deadline``: when
    the vendor stops waiting for an approval (STACKIT ``orderedAt + approvalTimeout``).
    """
    kind = str(event.get("type") or "")
    command = str(event.get("command") or "")
    csid = channel_subscription_id

    def call(
        operation_id: str, action: str, body: Mapping[str, Any], deadline: datetime | None = None
    ) -> VendorCall:
        return VendorCall(channel, operation_id, action, subscription_id, csid, dict(body), deadline)

    started = kind in _STARTED and command in _STARTING_COMMANDS
    if channel == "azure_marketplace":
        if started:
            quantity = origin.get("quantity") if origin else snapshot.get("quantity")
            plan = origin.get("plan") if origin else None
            return [call(csid, "activate", {"planId": plan, "quantity": quantity})]
        if kind in _ACCEPTS and _requested(order, "change_plan", "change_quantity", "reinstate"):
            return [_azure_patch(call, order, "Success", options)]  # type: ignore[arg-type]
        return []
    if channel in ("gcp_marketplace", "stackit_marketplace"):
        awaited = _requested(origin, "create")
        if started and awaited:
            return [call(csid, "decision", {"verb": "approve"}, approval_deadline)]
        if kind == "SubscriptionRejected" and awaited:
            reason = str(event.get("reason") or "refused by the seller")
            return [call(csid, "decision", {"verb": "reject", "reason": reason}, approval_deadline)]
        if channel == "gcp_marketplace" and kind in ("PlanChanged", "PlanChangeScheduled"):
            if _requested(order, "change_plan"):
                return [_gcp_plan_decision(call, csid, order, "approve", None)]  # type: ignore[arg-type]
        return []
    if channel == "aws_marketplace":
        if kind != "CancellationScheduled" or not order or order.get("action") != "cancel":
            return []
        dimension = options.aws_metered_dimensions.get(str(snapshot.get("plan_id") or ""))
        if not dimension:
            return []
        return [_aws_final_meter(call, csid, event, snapshot, dimension, options)]
    return []


def calls_for_rejection(
    channel: str,
    *,
    subscription_id: str,
    channel_subscription_id: str,
    rejection: Mapping[str, Any],
    order: Mapping[str, Any] | None,
    options: FulfilmentOptions,
    approval_deadline: datetime | None = None,
) -> list[VendorCall]:
    """The vendor calls a command the lifecycle refused asks for (the channel's request is declined)."""
    csid = channel_subscription_id
    reason = f"{rejection.get('reason_code')}: {rejection.get('message')}"

    def call(
        operation_id: str, action: str, body: Mapping[str, Any], deadline: datetime | None = None
    ) -> VendorCall:
        return VendorCall(channel, operation_id, action, subscription_id, csid, dict(body), deadline)

    if channel == "azure_marketplace" and _requested(order, "change_plan", "change_quantity", "reinstate"):
        return [_azure_patch(call, order, "Failure", options)]  # type: ignore[arg-type]
    if channel == "gcp_marketplace" and _requested(order, "change_plan"):
        return [_gcp_plan_decision(call, csid, order, "reject", reason)]  # type: ignore[arg-type]
    if channel in ("gcp_marketplace", "stackit_marketplace") and _requested(order, "create"):
        return [call(csid, "decision", {"verb": "reject", "reason": reason}, approval_deadline)]
    return []


def _azure_patch(call: Any, order: Mapping[str, Any], status: str, options: FulfilmentOptions) -> VendorCall:
    operation = str(order.get("channel_event_id") or "")
    at = _time(order.get("effective_at"))
    deadline = at + timedelta(seconds=options.azure_patch_deadline_seconds) if at else None
    result: VendorCall = call(operation, "patch_operation", {"status": status}, deadline)
    return result


def _gcp_plan_decision(
    call: Any, csid: str, order: Mapping[str, Any], verb: str, reason: str | None
) -> VendorCall:
    body: dict[str, Any] = {"verb": verb, "pendingPlanName": order.get("plan")}
    if reason:
        body["reason"] = reason
    operation = str(order.get("channel_event_id") or f"{csid}:{order.get('plan')}")
    result: VendorCall = call(operation, "plan_change_decision", body)
    return result


def _aws_final_meter(
    call: Any,
    csid: str,
    event: Mapping[str, Any],
    snapshot: Mapping[str, Any],
    dimension: str,
    options: FulfilmentOptions,
) -> VendorCall:
    product_code, _, customer = csid.partition(":")
    at = _time(event.get("effective_at")) or datetime.now(UTC)
    hour = at.replace(minute=0, second=0, microsecond=0)
    record = {
        "Timestamp": int(hour.timestamp()),
        "CustomerIdentifier": customer,
        "Dimension": dimension,
        "Quantity": int(snapshot.get("quantity") or 0),
    }
    # AWS deduplicates a usage record by customer, dimension and hour: that triple is the operation.
    operation = f"{customer}:{dimension}:{record['Timestamp']}"
    deadline = at + timedelta(seconds=options.aws_final_meter_seconds)
    result: VendorCall = call(
        operation, "meter_final", {"ProductCode": product_code, "UsageRecords": [record]}, deadline
    )
    return result
