"""Google Cloud Marketplace (Partner Procurement API): Pub/Sub entitlement and account events.

The body is either the decoded Pub/Sub ``message.data`` or the push-subscription envelope
``{"message": {"data": "<base64>", ...}, "subscription": "..."}``. The entitlement id is the
subscription id (plan changes keep it). Google carries no price, currency or quantity.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from services.intake.domain.errors import UnparseableInput
from services.intake.domain.normalizers import lookup_responses
from services.intake.domain.normalizers.base import ChannelResult, Context
from services.intake.domain.timefmt import format_ms, parse_timestamp
from services.intake.domain.wire import Reader, load_object, must, parse_json_text
from shared.contracts.canonical import Action, CanonicalOrderChange, Phase, StatusAfter

CHANNEL = "gcp_marketplace"

# eventType -> (action, phase, status after, carries the new plan, effective time known)
_EVENTS: dict[str, tuple[Action, Phase, StatusAfter | None, bool, bool]] = {
    "ENTITLEMENT_CREATION_REQUESTED": ("create", "requested", "pending", True, True),
    "ENTITLEMENT_OFFER_ACCEPTED": ("create", "requested", "pending", True, True),
    "ENTITLEMENT_ACTIVE": ("activate", "effective", "active", True, True),
    "ENTITLEMENT_PLAN_CHANGE_REQUESTED": ("change_plan", "requested", "active", True, True),
    "ENTITLEMENT_PLAN_CHANGED": ("change_plan", "effective", "active", True, True),
    "ENTITLEMENT_PLAN_CHANGE_CANCELLED": ("change_plan", "withdrawn", "active", False, True),
    # the end date is only in the resource (subscriptionEndTime): unknown here
    "ENTITLEMENT_PENDING_CANCELLATION": ("cancel", "scheduled", "cancel_scheduled", False, False),
    "ENTITLEMENT_CANCELLING": ("cancel", "scheduled", "cancel_scheduled", False, False),
    "ENTITLEMENT_CANCELLATION_REVERTED": ("uncancel", "effective", "active", False, True),
    "ENTITLEMENT_CANCELLED": ("cancel", "effective", "cancelled", False, True),
    "ENTITLEMENT_DELETED": ("cancel", "effective", "cancelled", False, True),  # idempotent cancel
    "ENTITLEMENT_RENEWED": ("renew", "effective", "active", True, True),
    "ENTITLEMENT_OFFER_ENDED": ("refresh", "effective", None, False, True),
}


def _unwrap(doc: dict[str, Any]) -> dict[str, Any]:
    """The event inside a Pub/Sub push envelope (base64 ``message.data``), or ``doc`` itself."""
    message = doc.get("message")
    if "eventType" in doc or not isinstance(message, dict):
        return doc
    data = message.get("data")
    if not isinstance(data, str):
        raise UnparseableInput("UNKNOWN_SHAPE", "Pub/Sub push envelope without base64 message.data")
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        try:  # some emulators send URL-safe base64
            decoded = base64.urlsafe_b64decode(data.strip())
        except (binascii.Error, ValueError):
            raise UnparseableInput("NOT_BASE64", f"Pub/Sub message.data is not base64: {exc}") from exc
    try:
        inner = parse_json_text(decoded.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnparseableInput("NOT_JSON", f"Pub/Sub message.data is not JSON: {exc}") from exc
    if not isinstance(inner, dict):
        raise UnparseableInput("NOT_AN_OBJECT", "Pub/Sub message.data is not a JSON object")
    return inner


def normalize(body: bytes, ctx: Context) -> ChannelResult:
    """Normalize a GCP procurement event (raw or in a Pub/Sub push envelope)."""
    doc = _unwrap(load_object(body))
    if lookup_responses.is_gcp_entitlement(doc):  # a providers.entitlements.get response
        return lookup_responses.gcp_entitlement(doc, ctx)
    if "eventType" not in doc:
        raise UnparseableInput("UNKNOWN_SHAPE", "not a GCP procurement event (no eventType)")
    r = Reader(doc)
    event_type = r.text("eventType", required=True)
    event_id = r.text("eventId")
    r.check()
    event_type = must(event_type, "eventType").upper()
    if event_type.startswith("ACCOUNT_"):
        return ChannelResult(ignored=f"GCP {event_type}: an account event, not a subscription change")
    mapped = _EVENTS.get(event_type)
    if mapped is None:
        raise UnparseableInput("UNKNOWN_EVENT_TYPE", f"unknown GCP eventType {event_type!r}")
    action, phase, status_after, carries_plan, timed = mapped
    ent = r.obj("entitlement", required=True)
    entitlement_id = ent.text("id", required=True)
    update_time = ent.text("updateTime")
    offer_start = ent.text("newOfferStartTime")
    plan = ent.text("newPlan") if carries_plan else None
    product = product_id(ent.text("productExternalName"), ent.text("newProduct") or ent.text("product"))
    offer = ent.text("newOffer")
    effective = _effective(ent, update_time, offer_start) if timed else None
    r.check()
    change = CanonicalOrderChange(
        action=action,
        phase=phase,
        channel=CHANNEL,
        channel_subscription_id=must(entitlement_id, "entitlement.id"),
        channel_event_id=event_id,
        product=product,
        plan=plan,
        offer_id=offer,
        effective_at=effective,
        status_after=status_after,
    )
    return ChannelResult(changes=[change])


def product_id(external_name: str | None, path: str | None) -> str | None:
    """The product (8a rule 7): ``productExternalName``, else the NAME of a ``.../products/NAME`` path.

    ``newProduct`` / ``product`` may hold an offer or quote path instead of a product; such a
    path names no product, so the result is ``None`` rather than a guess. A bare name (no
    path at all) is taken as it is.
    """
    if external_name:
        return external_name
    if not path:
        return None
    parts = [p for p in path.strip().split("/") if p]
    if len(parts) == 1:
        return parts[0]
    if len(parts) >= 2 and parts[-2] == "products":
        return parts[-1]
    return None


def _effective(ent: Reader, update_time: str | None, offer_start: str | None) -> str | None:
    """``updateTime``, or a private offer's later ``newOfferStartTime`` (Google's rule)."""
    updated: datetime | None = None
    starts: datetime | None = None
    try:
        updated = parse_timestamp(update_time, assume_utc=False) if update_time else None
    except ValueError as exc:
        ent.fail("INVALID_TIMESTAMP", "updateTime", str(exc))
    try:
        starts = parse_timestamp(offer_start, assume_utc=False) if offer_start else None
    except ValueError as exc:
        ent.fail("INVALID_TIMESTAMP", "newOfferStartTime", str(exc))
    if starts is not None and (updated is None or starts > updated):
        return format_ms(starts)
    return format_ms(updated) if updated is not None else None
