"""AWS Marketplace SaaS: SNS notifications (enveloped or raw) and EventBridge agreement/license events.

SNS messages carry no subscription id: the canonical id is ``product-code:customer-identifier``
(the pair AWS uses everywhere else). EventBridge events key on the agreement id; a RENEW or
REPLACE agreement is a new id that replaces ``previousAgreementId``.
"""

from __future__ import annotations

from typing import Any

from services.intake.domain.errors import UnparseableInput
from services.intake.domain.normalizers import lookup_responses
from services.intake.domain.normalizers.base import ChannelResult, Context
from services.intake.domain.wire import Reader, load_object, must, parse_json_text
from shared.contracts.canonical import (
    Action,
    CanonicalAccount,
    CanonicalCustomer,
    CanonicalOrderChange,
    Phase,
    StatusAfter,
)

CHANNEL = "aws_marketplace"

# SNS action -> (action, phase, status after, carries an effective time)
_SNS: dict[str, tuple[Action, Phase, StatusAfter | None, bool]] = {
    "subscribe-success": ("create", "effective", "active", True),
    "subscribe-fail": ("create_failed", "failed", "failed", True),
    # about one hour left for final metering; the final instant comes with unsubscribe-success
    "unsubscribe-pending": ("cancel", "scheduled", "cancel_scheduled", False),
    "unsubscribe-success": ("cancel", "effective", "cancelled", True),
    # same message for new contract, upgrade, renewal and expiry: only GetEntitlements tells
    "entitlement-updated": ("refresh", "effective", None, True),
}

# EventBridge detail-types (without the " - Proposer"/" - Manufacturer" suffix) that change nothing
_INFORMATIONAL = (
    "purchase agreement ending",
    "purchase agreement renewal terms finalized",
    "purchase agreement renewal upcoming",
    "purchase agreement advisory issued",
    "purchase agreement advisory resolved",
    "purchase agreement billing adjustment completed",
    "purchase agreement billing adjustment failed",
    "agreement cancellation request",
)
# DescribeAgreement status -> status_after, where an event carries one (8a rule 3: unknown if unrecognised)
_AGREEMENT_STATUS: dict[str, StatusAfter] = {
    "ACTIVE": "active",
    "CANCELLED": "cancelled",
    "EXPIRED": "cancelled",
    "TERMINATED": "cancelled",
}
# Agreement Ended with these statuses is a hand-over to the successor agreement, not a cancel
_SUCCEEDED = ("RENEWED", "REPLACED", "SUPERCEDED", "SUPERSEDED")


def normalize(body: bytes, ctx: Context) -> ChannelResult:
    """Normalize an SNS envelope, a raw SNS message or an EventBridge event."""
    doc = load_object(body)
    if lookup_responses.is_aws_entitlements(doc):  # a GetEntitlements response
        return lookup_responses.aws_entitlements(doc, ctx)
    if lookup_responses.is_aws_agreement_terms(doc):  # a GetAgreementTerms response
        return lookup_responses.aws_agreement_terms(doc, ctx)
    if "detail-type" in doc:
        return _eventbridge(Reader(doc))
    if "Type" in doc and ("Message" in doc or "MessageId" in doc):
        return _envelope(Reader(doc))
    if "action" in doc and ("customer-identifier" in doc or "product-code" in doc):
        # SQS raw message delivery: the inner message alone, without id or timestamp
        return _sns_message(Reader(doc), message_id=None, timestamp=None)
    raise UnparseableInput("UNKNOWN_SHAPE", "not an AWS SNS notification or EventBridge event")


def _envelope(r: Reader) -> ChannelResult:
    kind = r.text("Type", required=True)
    message_id = r.text("MessageId")
    timestamp = r.timestamp("Timestamp")
    r.check()
    if kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return ChannelResult(ignored=f"SNS {kind}: confirm the topic subscription, not an order")
    if kind != "Notification":
        raise UnparseableInput("UNKNOWN_EVENT_TYPE", f"unknown SNS message type {kind!r}")
    raw: Any = r.raw("Message")
    if isinstance(raw, str):
        try:
            raw = parse_json_text(raw)
        except (ValueError, RecursionError) as exc:
            raise UnparseableInput("NOT_JSON", f"SNS Message is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        if raw is None:
            r.missing("Message")
            r.check()
        raise UnparseableInput("NOT_AN_OBJECT", "SNS Message is not a JSON object")
    return _sns_message(Reader(raw, "Message", r.errors), message_id=message_id, timestamp=timestamp)


def _sns_message(m: Reader, *, message_id: str | None, timestamp: str | None) -> ChannelResult:
    action_text = m.text("action", required=True)
    customer_id = m.text("customer-identifier", required=True)  # AWS examples pad it with a space
    product_code = m.text("product-code", required=True)
    offer = m.text("offer-identifier")
    trial = m.boolean("isFreeTrialTermPresent")  # documented as the STRING "true"/"false"
    m.check()
    action_key = must(action_text, "action").lower()
    mapped = _SNS.get(action_key)
    if mapped is None:
        raise UnparseableInput("UNKNOWN_EVENT_TYPE", f"unknown AWS SNS action {action_text!r}")
    action, phase, status_after, timed = mapped
    if action_key == "subscribe-success" and trial:
        status_after = "trialing"
    customer_id, product_code = must(customer_id, "customer-identifier"), must(product_code, "product-code")
    change = CanonicalOrderChange(
        action=action,
        phase=phase,
        channel=CHANNEL,
        channel_subscription_id=f"{product_code}:{customer_id}",
        channel_event_id=message_id,
        customer=CanonicalCustomer(channel_customer_id=customer_id),
        # 8a rule 8: SNS names no separate account, so the customer identifier is the account
        account=CanonicalAccount(channel_account_id=customer_id),
        product=product_code,
        offer_id=offer,
        effective_at=timestamp if timed else None,
        status_after=status_after,
        trial=trial,
    )
    return ChannelResult(changes=[change])


def _agreement_from_resources(r: Reader) -> str | None:
    resources = r.raw("resources")
    if isinstance(resources, list):
        for arn in resources:
            if isinstance(arn, str) and ":agreement:" in arn:
                return arn.rsplit(":", 1)[-1].strip() or None
    return None


def _eventbridge(r: Reader) -> ChannelResult:
    detail_type = r.text("detail-type", required=True)
    event_id = r.text("id")
    event_time = r.timestamp("time")
    detail = r.obj("detail", required=True)
    agreement = detail.obj("agreement")
    agreement_id = agreement.text("id") or _agreement_from_resources(r)
    buyer = detail.obj("acceptor").text("accountId")
    product_obj = detail.obj("product")
    product = product_obj.text("code") or product_obj.text("id")
    offer = detail.obj("offer").text("id")
    intent = (agreement.text("intent") or "NEW").upper()
    status = (agreement.text("status") or "").upper()
    previous = agreement.text("previousAgreementId")
    accepted = agreement.timestamp("acceptanceTime")
    start = agreement.timestamp("startTime") or accepted
    end = agreement.timestamp("endTime")
    auto_renewal = agreement.boolean("autoRenewalEnabled")
    r.check()
    base = must(detail_type, "detail-type").split(" - ")[0].strip().lower()
    if any(base.startswith(prefix) for prefix in _INFORMATIONAL):
        return ChannelResult(ignored=f"EventBridge {detail_type!r} is informational")
    action: Action
    phase: Phase = "effective"
    status_after: StatusAfter | None
    replaces: str | None = None
    effective_at = event_time
    if base == "purchase agreement created":
        effective_at = start or event_time
        status_after = "active"
        if intent == "RENEW":
            action, replaces = "renew", previous
        elif intent == "REPLACE":
            action, replaces = "change_plan", previous
        else:
            action = "create"
    elif base == "purchase agreement amended":
        # the new terms come from GetAgreementTerms; they apply from acceptance (8a rule 5),
        # not from the envelope time nor the original contract's start
        action, status_after = "refresh", _AGREEMENT_STATUS.get(status, "unknown") if status else None
        effective_at = accepted or event_time
    elif base == "purchase agreement ended":
        if status in _SUCCEEDED:
            return ChannelResult(ignored=f"agreement {agreement_id} ended as {status}: succeeded")
        action, status_after, effective_at = "cancel", "cancelled", end or event_time
    elif base == "license updated":
        action, status_after = "refresh", None
    elif base == "license deprovisioned":
        action, status_after = "cancel", "cancelled"
    else:
        raise UnparseableInput("UNKNOWN_EVENT_TYPE", f"unknown EventBridge detail-type {detail_type!r}")
    if auto_renewal is False and status_after in ("active", None) and base.startswith("purchase agreement"):
        status_after = "cancel_scheduled"  # 8a rule 10: active, but ends with its term
    if agreement_id is None:
        detail.missing("agreement.id")
        detail.check()
    change = CanonicalOrderChange(
        action=action,
        phase=phase,
        channel=CHANNEL,
        channel_subscription_id=must(agreement_id, "detail.agreement.id"),
        replaces_channel_subscription_id=replaces,
        channel_event_id=event_id,
        customer=CanonicalCustomer(channel_customer_id=buyer),
        # 8a rule 8: the acceptor's AWS account is both the customer and the account
        account=CanonicalAccount(channel_account_id=buyer),
        product=product,
        offer_id=offer,
        effective_at=effective_at,
        status_after=status_after,
    )
    return ChannelResult(changes=[change])
