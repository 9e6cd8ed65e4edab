"""Which vendor call a lifecycle change or a refused command asks for (pure rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.domain.fulfilment import FulfilmentOptions, calls_for_event, calls_for_rejection

OPTIONS = FulfilmentOptions(azure_patch_deadline_seconds=10, aws_metered_dimensions={"pro": "seats"})
SNAP = {"plan_id": "pro", "quantity": 7}


def _event(kind: str, command: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "command": command, "effective_at": "2025-07-10T10:20:30Z", **extra}


def _order(action: str, phase: str, **extra: Any) -> dict[str, Any]:
    return {"action": action, "phase": phase, **extra}


def _calls(
    channel: str, event: dict[str, Any], order: Any = None, origin: Any = None, csid: str = "csid-1"
) -> list[Any]:
    return calls_for_event(
        channel,
        subscription_id="sub-1",
        channel_subscription_id=csid,
        event=event,
        snapshot=SNAP,
        order=order,
        origin=origin,
        options=OPTIONS,
    )


def test_azure_activates_once_started_and_patches_requested_operations() -> None:
    origin = _order("create", "requested", plan="team-monthly", quantity=15)
    [activate] = _calls("azure_marketplace", _event("SubscriptionActivated", "create"), origin=origin)
    assert (activate.operation_id, activate.action, dict(activate.body)) == (
        "csid-1",
        "activate",
        {"planId": "team-monthly", "quantity": 15},
    )
    asked = _order(
        "change_quantity", "requested", channel_event_id="op-9", effective_at="2025-07-10T10:00:00.000Z"
    )
    [patch] = _calls("azure_marketplace", _event("QuantityChanged", "change_quantity"), order=asked)
    assert (patch.operation_id, patch.action, patch.body["status"]) == ("op-9", "patch_operation", "Success")
    assert patch.deadline == datetime(2025, 7, 10, 10, 0, 10, tzinfo=UTC)
    # an operation Azure reports as already Succeeded needs no answer
    told = _order("change_quantity", "effective", channel_event_id="op-9")
    assert _calls("azure_marketplace", _event("QuantityChanged", "change_quantity"), order=told) == []


def test_a_refused_request_is_answered_failure_or_reject() -> None:
    asked = _order("change_plan", "requested", channel_event_id="op-3", plan="business-monthly")
    refusal = {"reason_code": "NO_CHANGE", "message": "already on it"}
    common: dict[str, Any] = {"subscription_id": "s", "channel_subscription_id": "c", "rejection": refusal}
    [azure] = calls_for_rejection("azure_marketplace", order=asked, options=OPTIONS, **common)
    assert (azure.action, azure.body["status"]) == ("patch_operation", "Failure")
    [gcp] = calls_for_rejection("gcp_marketplace", order=asked, options=OPTIONS, **common)
    assert (gcp.action, gcp.body["verb"], gcp.body["pendingPlanName"]) == (
        "plan_change_decision",
        "reject",
        "business-monthly",
    )
    created = _order("create", "requested")
    [stackit] = calls_for_rejection("stackit_marketplace", order=created, options=OPTIONS, **common)
    assert (stackit.action, stackit.body["verb"]) == ("decision", "reject")
    assert calls_for_rejection("stripe", order=asked, options=OPTIONS, **common) == []


@pytest.mark.parametrize("channel", ["gcp_marketplace", "stackit_marketplace"])
def test_approval_channels_follow_the_lifecycle(channel: str) -> None:
    origin = _order("create", "requested")
    [approve] = _calls(channel, _event("SubscriptionActivated", "approve"), origin=origin)
    assert (approve.action, approve.body["verb"]) == ("decision", "approve")
    [reject] = _calls(channel, _event("SubscriptionRejected", "reject", reason="no"), origin=origin)
    assert reject.body == {"verb": "reject", "reason": "no"}
    # a subscription the channel created as already effective waits for no approval
    assert (
        _calls(channel, _event("SubscriptionActivated", "create"), origin=_order("create", "effective")) == []
    )


def test_aws_final_meter_only_for_metered_plans_before_the_agreement_ends() -> None:
    cancel = _order("cancel", "scheduled")
    [meter] = _calls(
        "aws_marketplace", _event("CancellationScheduled", "cancel"), order=cancel, csid="prodcode:cust-1"
    )
    assert meter.body["ProductCode"] == "prodcode"
    [record] = meter.body["UsageRecords"]
    hour = datetime(2025, 7, 10, 10, tzinfo=UTC)
    assert record == {
        "Timestamp": int(hour.timestamp()),
        "CustomerIdentifier": "cust-1",
        "Dimension": "seats",
        "Quantity": 7,
    }
    assert meter.deadline == datetime(2025, 7, 10, 10, 20, 30, tzinfo=UTC) + timedelta(hours=1)
    unmetered = FulfilmentOptions()
    assert (
        calls_for_event(
            "aws_marketplace",
            subscription_id="s",
            channel_subscription_id="p:c",
            event=_event("CancellationScheduled", "cancel"),
            snapshot=SNAP,
            order=cancel,
            origin=None,
            options=unmetered,
        )
        == []
    )


@given(
    kind=st.sampled_from(
        ["SubscriptionActivated", "PlanChanged", "QuantityChanged", "SubscriptionRenewed", "TrialStarted"]
    ),
    command=st.sampled_from(["create", "approve", "change_plan", "change_quantity", "renew"]),
    channel=st.sampled_from(["stripe", "shopify", "direct", "cleverbridge", "omnistrate"]),
)
def test_channels_without_an_outbound_half_never_get_a_call(kind: str, command: str, channel: str) -> None:
    order = _order("change_plan", "requested", channel_event_id="x")
    assert _calls(channel, _event(kind, command), order=order, origin=_order("create", "requested")) == []


@given(
    kind=st.sampled_from(
        ["SubscriptionActivated", "PlanChanged", "QuantityChanged", "SubscriptionReactivated", "TrialStarted"]
    ),
    command=st.sampled_from(["create", "approve", "change_plan", "change_quantity", "reactivate"]),
)
def test_one_event_asks_at_most_one_call_per_operation(kind: str, command: str) -> None:
    order = _order("change_plan", "requested", channel_event_id="op-1", plan="p")
    for channel in ("azure_marketplace", "gcp_marketplace", "stackit_marketplace", "aws_marketplace"):
        calls = _calls(channel, _event(kind, command), order=order, origin=_order("create", "requested"))
        keys = [(c.channel, c.operation_id, c.action) for c in calls]
        assert len(keys) == len(set(keys)) <= 1
