"""Microsoft commercial marketplace (SaaS Fulfillment API v2): webhooks and resolve/GET responses.

* Webhook (has ``action``): top-level ``planId``/``quantity`` are the **new** values; the
  embedded ``subscription`` is the **pre-change** state, used only for the customer, term
  and status.
* Resolve response (``subscription`` wrapper) or a bare Subscription object (GET): the
  state of the subscription; ``PendingFulfillmentStart`` is a new order awaiting activation.

Microsoft pads enum values (``" Subscribed "``) and prints up to 7 fractional digits or no
zone at all (documented UTC); both are tolerated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.intake.domain.errors import UnparseableInput
from services.intake.domain.normalizers.base import ChannelResult, Context
from services.intake.domain.snapshots import Known, known_from_transport, snapshot_step
from services.intake.domain.timefmt import format_ms, normalize_duration, parse_timestamp
from services.intake.domain.users import merged, named
from services.intake.domain.wire import Reader, load_object, must
from shared.contracts.canonical import (
    Action,
    CanonicalAccount,
    CanonicalCustomer,
    CanonicalOrderChange,
    CanonicalUser,
    Phase,
    StatusAfter,
)

CHANNEL = "azure_marketplace"

_SUBSCRIPTION_STATUS: dict[str, StatusAfter] = {
    "pendingfulfillmentstart": "pending",
    "subscribed": "active",
    "suspended": "suspended",
    "unsubscribed": "cancelled",
}

# webhook action -> (canonical action, status after or None = keep the subscription's, needs ISV ack)
_ACTIONS: dict[str, tuple[Action, StatusAfter | None, bool]] = {
    "changeplan": ("change_plan", None, True),
    "changequantity": ("change_quantity", None, True),
    "reinstate": ("reinstate", "active", True),
    "renew": ("renew", "active", False),
    "suspend": ("suspend", "suspended", False),
    "unsubscribe": ("cancel", "cancelled", False),
    "subscribe": ("activate", "active", False),  # newer doc revision, notify-only
}


def _key(value: str | None) -> str:
    return (value or "").strip().lower()


def _customer(sub: Reader) -> tuple[CanonicalCustomer, CanonicalAccount]:
    beneficiary = sub.obj("beneficiary")
    customer = CanonicalCustomer(
        channel_customer_id=beneficiary.text("objectId"), email=beneficiary.text("emailId")
    )
    # 8a rule 8: no tenant given -> the customer's own id is the account
    tenant = beneficiary.text("tenantId") or customer.channel_customer_id
    return customer, CanonicalAccount(channel_account_id=tenant)


def _users(sub: Reader) -> tuple[CanonicalUser, ...]:
    """Beneficiary ``owner`` (the customer), purchaser ``admin`` (see services/intake/domain/users.py)."""
    return merged(
        [
            named(sub.obj("beneficiary").text("emailId"), "owner", "beneficiary"),
            named(sub.obj("purchaser").text("emailId"), "admin", "purchaser"),
        ]
    )


def _interval(sub: Reader) -> str | None:
    unit = sub.obj("term").text("termUnit")
    return normalize_duration(unit) if unit else None


def _trial(sub: Reader, present: bool) -> bool | None:
    if not present:
        return None
    value = sub.boolean("isFreeTrial")
    return bool(value)  # documented: optional, absent = false


def _status(status: StatusAfter | None, *, trial: bool | None, auto_renew: bool | None) -> StatusAfter | None:
    """8a rules 2 and 10 on an Azure status: a free trial that is subscribed is ``trialing``;
    subscribed without auto-renewal ends with its term (``cancel_scheduled``)."""
    if status == "active" and auto_renew is False:
        return "cancel_scheduled"
    if status == "active" and trial:
        return "trialing"
    return status


def _renewal_start(sub: Reader, fallback: str | None) -> str | None:
    """Start of the renewed term (8a rule 4): the term boundary nearest the operation time.

    The embedded subscription is documented as the pre-change state (the new term starts the
    day after ``endDate``, the last valid day); an already renewed one has it as ``startDate``.
    """
    term = sub.obj("term")
    candidates: list[datetime] = []
    start = term.timestamp("startDate", assume_utc=True)
    end = term.timestamp("endDate", assume_utc=True)
    if start:
        candidates.append(parse_timestamp(start, assume_utc=True))
    if end:
        last = parse_timestamp(end, assume_utc=True)
        candidates.append(datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1))
    if not candidates:
        return fallback
    if fallback is None:
        return format_ms(candidates[-1])
    at = parse_timestamp(fallback, assume_utc=True)
    return format_ms(min(candidates, key=lambda c: abs((c - at).total_seconds())))


def normalize(body: bytes, ctx: Context) -> ChannelResult:
    """Normalize an Azure webhook, resolve response or Subscription object."""
    doc = load_object(body)
    if "action" in doc:
        return _webhook(Reader(doc))
    if "subscription" in doc or "saasSubscriptionStatus" in doc:
        return _state(Reader(doc), known_from_transport(ctx.transport))
    raise UnparseableInput("UNKNOWN_SHAPE", "not an Azure SaaS webhook, resolve response or subscription")


def _webhook(r: Reader) -> ChannelResult:
    action_text = r.text("action", required=True)
    sub = r.obj("subscription")
    subscription_id = r.text("subscriptionId") or sub.text("id")
    if subscription_id is None:
        r.missing("subscriptionId")
    status = _key(r.text("status"))
    customer, account = _customer(sub)
    # top-level quantity is the new one; "" there means "not per seat", not "look elsewhere"
    quantity = (r if "quantity" in r.data else sub).integer("quantity", minimum=0)
    plan = r.text("planId") or sub.text("planId")
    product = r.text("offerId") or sub.text("offerId")
    interval = _interval(sub)
    effective_at = r.timestamp("timeStamp", assume_utc=True)
    trial = _trial(sub, bool(sub.data))
    event_id = r.text("id")
    before_text = _key(sub.text("saasSubscriptionStatus"))
    # 8a rule 3: no status carried -> null; a status we do not know -> unknown
    before = _SUBSCRIPTION_STATUS.get(before_text, "unknown") if before_text else None
    auto_renew = sub.boolean("autoRenew")
    r.check()
    subscription_id, action_text = must(subscription_id, "subscriptionId"), must(action_text, "action")
    mapped = _ACTIONS.get(_key(action_text))
    if mapped is None:
        raise UnparseableInput("UNKNOWN_EVENT_TYPE", f"unknown Azure webhook action {action_text!r}")
    action, status_after, acknowledged = mapped
    if status == "conflict":  # Microsoft: the new plan/quantity equals the existing one
        return ChannelResult(ignored=f"Azure operation {event_id} is a Conflict (no change)")
    phase: Phase
    if status == "failed":
        phase = "failed"
    elif acknowledged and status in ("", "notstarted", "inprogress"):
        phase = "requested"  # the ISV may still accept or refuse the operation
    else:
        phase = "effective"
    if action == "renew":
        effective_at = _renewal_start(sub, effective_at)
    change = CanonicalOrderChange(
        users=_users(sub),
        action=action,
        phase=phase,
        channel=CHANNEL,
        channel_subscription_id=subscription_id,
        channel_event_id=event_id,
        customer=customer,
        account=account,
        product=product,
        plan=plan,
        quantity=quantity,
        billing_interval=interval,
        effective_at=effective_at,
        status_after=_status(status_after or before, trial=trial, auto_renew=auto_renew),
        trial=trial,
    )
    return ChannelResult(changes=[change])


def _state(r: Reader, known: Known | None) -> ChannelResult:
    wrapped = "subscription" in r.data
    sub = r.obj("subscription") if wrapped else r
    subscription_id = r.text("id") or sub.text("id")
    if subscription_id is None:
        r.missing("id")
    plan = r.text("planId") or sub.text("planId")
    product = r.text("offerId") or sub.text("offerId")
    quantity = (r if "quantity" in r.data else sub).integer("quantity", minimum=0)
    status_text = _key(sub.text("saasSubscriptionStatus"))
    customer, account = _customer(sub)
    interval = _interval(sub)
    effective_at = sub.obj("term").timestamp("startDate", assume_utc=True)
    trial = _trial(sub, bool(sub.data))
    auto_renew = sub.boolean("autoRenew")
    r.check()
    subscription_id = must(subscription_id, "id")
    action: Action
    phase: Phase
    status_after: StatusAfter | None
    if status_text in ("", "pendingfulfillmentstart"):
        # a resolved landing-page token: the ISV must activate before billing starts
        action, phase, status_after = "create", "requested", "pending"
    else:
        status_after = _status(
            _SUBSCRIPTION_STATUS.get(status_text, "unknown"), trial=trial, auto_renew=auto_renew
        )
        # 8a rule 9: a GET snapshot means what the receiver's knowledge makes of it; without
        # any (a stateless call that says nothing) it can only be a refresh
        action, phase = snapshot_step(status_after, known) if known is not None else ("refresh", "effective")
    change = CanonicalOrderChange(
        users=_users(sub),
        action=action,
        phase=phase,
        channel=CHANNEL,
        channel_subscription_id=subscription_id,
        customer=customer,
        account=account,
        product=product,
        plan=plan,
        quantity=quantity,
        billing_interval=interval,
        effective_at=effective_at,
        status_after=status_after,
        trial=trial,
    )
    return ChannelResult(changes=[change])
