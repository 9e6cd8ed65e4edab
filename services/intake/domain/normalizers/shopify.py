"""Shopify ``subscription_contracts/*`` webhooks.

The topic is only in the ``X-Shopify-Topic`` header, the shop in ``X-Shopify-Shop-Domain``,
the delivery id in ``X-Shopify-Webhook-Id`` and the event time in ``X-Shopify-Triggered-At``
(nanoseconds, truncated to ms). The body has no lines, quantity or price: those need GraphQL.
``revision_id`` orders deliveries (older revisions are stale).
"""

from __future__ import annotations

from services.intake.domain.errors import InvalidOrder, reason
from services.intake.domain.normalizers import lookup_responses
from services.intake.domain.normalizers.base import ChannelResult, Context
from services.intake.domain.timefmt import interval_duration, to_rfc3339_ms
from services.intake.domain.wire import Reader, load_object, must
from shared.contracts.canonical import (
    Action,
    CanonicalAccount,
    CanonicalCustomer,
    CanonicalOrderChange,
    StatusAfter,
)

CHANNEL = "shopify"

_TOPICS: dict[str, Action] = {
    "create": "create",
    "update": "refresh",  # does not say what changed: diff stored state or ask GraphQL
    "activate": "reinstate",  # a new contract arrives as create; activate follows a pause
    "pause": "suspend",
    "fail": "suspend",  # billing failures; the contract can be re-activated
    "cancel": "cancel",
    "expire": "cancel",  # natural end (max_cycles reached)
}
_STATUS: dict[str, StatusAfter] = {
    "active": "active",
    "paused": "suspended",
    "cancelled": "cancelled",
    "expired": "cancelled",
    "failed": "failed",
    "stale": "unknown",  # billing meaning undocumented
}


# status topics (API 2024-01): the status each one reports
_TOPIC_STATUS: dict[str, StatusAfter] = {
    "activate": "active",
    "pause": "suspended",
    "fail": "failed",
    "cancel": "cancelled",
    "expire": "cancelled",
}


def normalize(body: bytes, ctx: Context) -> ChannelResult:
    """Normalize a Shopify subscription contract webhook."""
    doc = load_object(body)
    if lookup_responses.is_shopify_contract(doc):  # an Admin GraphQL subscriptionContract response
        return lookup_responses.shopify_contract(doc, ctx)
    topic = ctx.header("X-Shopify-Topic")
    if topic is None:
        field = "headers.X-Shopify-Topic"
        raise InvalidOrder([reason("MISSING_FIELD", "the topic header is missing", field)])
    family, _, name = topic.strip().lower().partition("/")
    if family != "subscription_contracts":
        return ChannelResult(ignored=f"Shopify topic {topic!r} is not a subscription contract change")
    r = Reader(doc)
    contract_id = r.text("admin_graphql_api_id")
    if contract_id is None and r.has("id"):
        numeric = r.text("id")
        contract_id = f"gid://shopify/SubscriptionContract/{numeric}" if numeric else None
    if contract_id is None:
        r.missing("admin_graphql_api_id")
    customer_id = r.text("admin_graphql_api_customer_id")
    if customer_id is None and r.has("customer_id"):
        numeric_customer = r.text("customer_id")
        customer_id = f"gid://shopify/Customer/{numeric_customer}" if numeric_customer else None
    policy = r.obj("billing_policy")
    unit = policy.text("interval")
    count = policy.integer("interval_count", minimum=1) or 1
    currency = r.currency("currency_code")
    status_text = (r.text("status") or "").lower()
    revision = r.integer("revision_id")
    effective_at: str | None = None
    triggered = ctx.header("X-Shopify-Triggered-At")
    if triggered:
        try:
            effective_at = to_rfc3339_ms(triggered)
        except ValueError as exc:
            r.errors.append(reason("INVALID_TIMESTAMP", str(exc), "headers.X-Shopify-Triggered-At"))
    else:
        effective_at = r.timestamp("updated_at")
    r.check()
    action = _TOPICS.get(name, "refresh")  # a new status topic: record it, diff later
    status_after: StatusAfter | None = _STATUS.get(status_text, "unknown") if status_text else None
    # 8a rule 1: a status topic states the status after it (``fail`` -> suspend, status failed),
    # whatever the body's (possibly older) status field says
    status_after = _TOPIC_STATUS.get(name, status_after)
    change = CanonicalOrderChange(
        action=action,
        phase="effective",
        channel=CHANNEL,
        channel_subscription_id=must(contract_id, "admin_graphql_api_id"),
        channel_event_id=ctx.header("X-Shopify-Webhook-Id") or ctx.header("X-Shopify-Event-Id"),
        customer=CanonicalCustomer(channel_customer_id=customer_id),
        # 8a rule 8: no shop domain -> the customer's own id is the account
        account=CanonicalAccount(channel_account_id=ctx.header("X-Shopify-Shop-Domain") or customer_id),
        billing_interval=interval_duration(unit, count) if unit else None,
        currency=currency,
        effective_at=effective_at,
        status_after=status_after,
    )
    return ChannelResult(changes=[change], version=revision)
