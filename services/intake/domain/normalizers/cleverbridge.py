"""Cleverbridge JSON notifications: Purchase Model and Subscription Model.

* Purchase Model (``PaidOrderNotification``, ``RecurringBilling*Notification`` ...): one
  change per purchase item that has ``recurringBilling`` (its ``subscriptionId`` is a string).
* Subscription Model (``SubscriptionPaidNotification`` ...): ``subscriptionId`` is an
  integer; prices are decimal JSON numbers in major units (parsed as ``Decimal``).

Timestamps are RFC 3339 **without** a zone designator; Cleverbridge documents UTC. There is
no event id: the dedupe key is ``<purchaseId|subscriptionId>:<meta.type>:<meta.date>``.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from services.intake.domain.errors import UnparseableInput
from services.intake.domain.normalizers.base import ChannelResult, Context, line_money
from services.intake.domain.timefmt import compose_duration, format_ms, parse_timestamp
from services.intake.domain.wire import Reader, load_object, must
from shared.contracts.canonical import (
    Action,
    CanonicalAccount,
    CanonicalCustomer,
    CanonicalOrderChange,
    Phase,
    StatusAfter,
)

CHANNEL = "cleverbridge"

# subscriptionEventtypeId -> action
_EVENT_TYPES: dict[str, Action] = {
    "new": "create",
    "add": "create",
    "renewed": "renew",
    "upgrade": "change_plan",
    "downgrade": "change_plan",
    "incqty": "change_quantity",
    "deactivate": "cancel",
    "reinstate": "uncancel",
    "remove": "cancel",
}
# subscription status code or name -> status after (only ACT is confirmed in JSON; DEA is assumed)
_STATUS: dict[str, StatusAfter] = {
    "act": "active",
    "active": "active",
    "dea": "cancel_scheduled",
    "deactivated": "cancel_scheduled",
    "fin": "cancelled",
    "finished": "cancelled",
    "gra": "past_due",
    "grace": "past_due",
    "hol": "suspended",
    "hold": "suspended",
    "new": "pending",
}
_DEFAULT_STATUS: dict[Action, StatusAfter] = {
    "create": "active",
    "renew": "active",
    "change_plan": "active",
    "change_quantity": "active",
    "uncancel": "active",
    "cancel": "cancel_scheduled",
    "suspend": "suspended",
    "refresh": "active",
}

# Purchase Model notification types -> (fixed action or None = per item event type, phase, status)
_PURCHASE_TYPES: dict[str, tuple[Action, Phase, StatusAfter] | None] = {
    "paidordernotification": None,
    "recurringbillingcancelednotification": ("cancel", "scheduled", "cancel_scheduled"),
    "recurringbillingreinstatednotification": ("uncancel", "effective", "active"),
    "recurringbillingongracenotification": ("refresh", "effective", "past_due"),
    "recurringbillinggraceperiodnotification": ("refresh", "effective", "past_due"),
    "recurringbillingonholdnotification": ("suspend", "effective", "suspended"),
    "subscriptionbillingdateextendednotification": ("refresh", "effective", "active"),
}
_SUBSCRIPTION_TYPES = ("subscriptionpaidnotification", "subscriptionrenewaltypechangednotification")
_IGNORED_TYPES = (
    "subscriptionreminderchargenotification",
    "refundnotification",
    "partialrefundnotification",
    "chargebacknotification",
    "customerprofileupdatenotification",
)


def _status(code: str | None, action: Action) -> StatusAfter:
    return _STATUS.get((code or "").strip().lower()) or _DEFAULT_STATUS.get(action, "unknown")


def normalize(body: bytes, ctx: Context) -> ChannelResult:
    """Normalize a Cleverbridge notification (Purchase or Subscription Model)."""
    doc = load_object(body)
    r = Reader(doc)
    meta = r.obj("meta")
    kind = meta.text("type")
    date_raw = meta.text("date")
    purchase_shape = "purchaseId" in doc or "items" in doc
    subscription_shape = "subscriptionItems" in doc or "subscriptionId" in doc
    if kind is None and not (purchase_shape or subscription_shape):
        raise UnparseableInput("UNKNOWN_SHAPE", "not a Cleverbridge notification (no meta.type)")
    if kind is None:
        meta.missing("type")
    r.check()
    key = must(kind, "meta.type").lower()
    if key in _IGNORED_TYPES:
        return ChannelResult(ignored=f"Cleverbridge {kind} does not change a subscription")
    if key in _SUBSCRIPTION_TYPES:
        return _subscription_model(r, must(kind, "meta.type"), date_raw)
    if key in _PURCHASE_TYPES:
        return _purchase_model(r, must(kind, "meta.type"), date_raw, _PURCHASE_TYPES[key])
    raise UnparseableInput("UNKNOWN_EVENT_TYPE", f"unknown Cleverbridge notification type {kind!r}")


def _meta_time(r: Reader, date_raw: str | None) -> str | None:
    return r.obj("meta").timestamp("date", assume_utc=True) if date_raw else None


def _purchase_model(
    r: Reader, kind: str, date_raw: str | None, fixed: tuple[Action, Phase, StatusAfter] | None
) -> ChannelResult:
    purchase_id = r.text("purchaseId", required=True)
    meta_time = _meta_time(r, date_raw)
    contact = r.obj("billingContact")
    first, last = contact.text("firstname"), contact.text("lastname")
    name = " ".join(p for p in (first, last) if p) or None
    customer = CanonicalCustomer(
        channel_customer_id=r.text("customerReferenceNumber") or r.text("customerId"),
        email=contact.text("email"),
        name=name,
    )
    # 8a rule 8: without a company the customer's own id is the account
    account = CanonicalAccount(channel_account_id=contact.text("company") or customer.channel_customer_id)
    currency = r.obj("paymentInfo").currency("currencyId")
    test = (r.text("statusId") or "").upper() == "TST" or (r.text("status") or "").lower() == "test order"
    recurring = [i for i in r.objs("items") if i.has("recurringBilling")]
    r.check()
    if not recurring:
        return ChannelResult(ignored=f"Cleverbridge {kind} {purchase_id} has no subscription items")
    changes: list[CanonicalOrderChange] = []
    for item in recurring:
        rb = item.obj("recurringBilling")
        subscription_id = rb.text("subscriptionId", required=True)
        product = item.text("productId")
        quantity = item.integer("quantity", minimum=0)
        next_billing = rb.timestamp("nextBillingDate", assume_utc=True)
        if fixed is None:
            action = _EVENT_TYPES.get((rb.text("subscriptionEventtypeId") or "new").lower(), "refresh")
            phase: Phase = "scheduled" if action == "cancel" else "effective"
            status_after = _status(rb.text("statusId") or rb.text("status"), action)
        else:
            action, phase, status_after = fixed
        # a stopped auto-renewal ends at the next billing date; everything else happens now
        effective_at = next_billing if action == "cancel" and phase == "scheduled" else meta_time
        event_id = f"{purchase_id}:{kind}:{date_raw}"
        if len(recurring) > 1:  # one purchase, several subscriptions: keep event ids unique
            event_id += f":{item.text('runningNumber') or len(changes) + 1}"
        r.check()
        changes.append(
            CanonicalOrderChange(
                action=action,
                phase=phase,
                channel=CHANNEL,
                channel_subscription_id=must(subscription_id, "recurringBilling.subscriptionId"),
                channel_event_id=event_id,
                customer=customer,
                account=account,
                product=product,
                plan=product,
                quantity=quantity,
                currency=currency,
                effective_at=effective_at,
                status_after=status_after,
                test=test,
            )
        )
    return ChannelResult(changes=changes)


def _subscription_model(r: Reader, kind: str, date_raw: str | None) -> ChannelResult:
    subscription_id = r.text("subscriptionId", required=True)
    meta_time = _meta_time(r, date_raw)
    customer = CanonicalCustomer(channel_customer_id=r.text("customerId"))
    currency = r.currency("customerCurrencyId")
    months = r.integer("intervalMonthCount", minimum=0) or 0
    days = r.integer("intervalDayCount", minimum=0) or 0
    status_code = r.text("subscriptionstatus") or r.text("subscriptionStatus")  # lower-case key in the docs
    items = r.objs("subscriptionItems")
    current = [i for i in items if i.boolean("isCurrent") is not False] or items
    r.check()
    # the item the notification is about: one with an event type, lowest running number first
    current.sort(key=lambda i: (i.text("subscriptionEventtypeId") is None, i.integer("runningNumber") or 0))
    item = current[0] if current else None
    event_type = (item.text("subscriptionEventtypeId") if item else None) or ""
    if kind.lower() == "subscriptionrenewaltypechangednotification":
        action: Action = "refresh"
    else:
        action = _EVENT_TYPES.get(event_type.lower(), "renew" if not event_type else "refresh")
    quantity = item.integer("quantity", minimum=0) if item else None
    product = item.text("productId") if item else None
    # subscription-level price covers the whole subscription; with several items use the item's
    price_holder = r if len(current) <= 1 else (item or r)
    net = price_holder.obj("customerRenewalPrice").decimal("netPrice")
    money = line_money(
        price_holder, "customerRenewalPrice.netPrice", total=net, quantity=quantity, currency=currency
    )
    phase: Phase = "scheduled" if action == "cancel" else "effective"
    effective_at = meta_time
    if action in ("change_plan", "change_quantity") and item is not None and item.has("versionActiveDate"):
        effective_at = item.timestamp("versionActiveDate", assume_utc=True)
        phase = _phase_by_time(effective_at, meta_time)
    elif action == "renew" and item is not None:
        # 8a rule 4: a renewal takes effect at the new period's start (the renewed item's
        # startDate), not at the notification time
        effective_at = _new_period_start(r, item, months=months, days=days) or meta_time
    r.check()
    change = CanonicalOrderChange(
        action=action,
        phase=phase,
        channel=CHANNEL,
        channel_subscription_id=must(subscription_id, "subscriptionId"),
        channel_event_id=f"{subscription_id}:{kind}:{date_raw}",
        customer=customer,
        # 8a rule 8: the Subscription Model names no account, so the customer's own id is the account
        account=CanonicalAccount(channel_account_id=customer.channel_customer_id),
        product=product,
        plan=product,
        quantity=quantity,
        billing_interval=compose_duration(months=months, days=days),
        currency=currency,
        unit_amount=money.unit_amount,
        amount=money.amount,
        amount_basis=money.amount_basis,
        effective_at=effective_at,
        status_after=_status(status_code, action),
    )
    return ChannelResult(changes=[change])


def _phase_by_time(active_from: str | None, notified_at: str | None) -> Phase:
    """``scheduled`` when the new version becomes active after the notification, else ``effective``.

    Compared with the notification's own time, not a clock: normalizing stays pure.
    """
    if active_from is None or notified_at is None:
        return "effective"
    later = parse_timestamp(active_from, assume_utc=True) > parse_timestamp(notified_at, assume_utc=True)
    return "scheduled" if later else "effective"


def _new_period_start(r: Reader, item: Reader, *, months: int, days: int) -> str | None:
    """Start of the period a ``renewed`` item begins (8a rule 4).

    The item's ``startDate`` is the new interval's start when it lies after the
    subscription's own ``startDate``; otherwise the next renewal date minus one interval.
    """
    item_start = item.timestamp("startDate", assume_utc=True)
    sub_start = r.timestamp("startDate", assume_utc=True)
    if item_start is not None and (sub_start is None or _after(item_start, sub_start)):
        return item_start
    next_renewal = r.timestamp("nextRenewalDate", assume_utc=True) or r.timestamp(
        "nextBillingDate", assume_utc=True
    )
    if next_renewal is None or not (months or days):
        return item_start
    moment = parse_timestamp(next_renewal, assume_utc=True)
    return format_ms(_minus_months(moment, months) - timedelta(days=days))


def _after(a: str, b: str) -> bool:
    return parse_timestamp(a, assume_utc=True) > parse_timestamp(b, assume_utc=True)


def _minus_months(moment: datetime, months: int) -> datetime:
    """``moment`` moved back by whole calendar months (day clamped to the month's length)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)
