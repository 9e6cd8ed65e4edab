"""What a channel payload means for order management, decided without I/O.

The one place that strings the intake domain together: signature check, normalization,
plan mapping, policy, order value, validation and the lifecycle command an accepted change
becomes. The worker (``handlers.py``) calls it with the customer's credit read from
PostgreSQL; ``som intake normalize`` and the STACKIT poller call it without a database, so
the three agree by construction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from services.intake.domain.errors import InvalidOrder, UnparseableInput, reason
from services.intake.domain.impact import impact_score
from services.intake.domain.mapping import resolve_plan
from services.intake.domain.normalizers import normalize, region_hint
from services.intake.domain.policy import EffectivePolicy, effective_policy
from services.intake.domain.pricing import order_value
from services.intake.domain.signatures import JwtPolicy, verify_bearer_jwt, verify_signature, verify_sns
from services.intake.domain.users import subscription_users
from services.intake.domain.validation import CustomerCredit, validate
from shared.catalog import Catalog
from shared.contracts.canonical import CanonicalOrderChange, RejectionReason
from shared.contracts.commands import CommandParams, Timing, params_for

# Channels whose deliveries carry a signature this worker can check (with a configured secret).
SIGNED_CHANNELS: tuple[str, ...] = ("stripe", "shopify")

# Canonical (action, phase) -> lifecycle command and the timing it carries. ``None`` = recorded, no command.
COMMANDS: dict[tuple[str, str], tuple[str, Timing | None] | None] = {
    ("create", "effective"): ("create", None),
    ("create", "requested"): ("create", None),
    ("create", "scheduled"): ("create", None),
    ("activate", "effective"): ("approve", None),
    ("activate", "requested"): ("approve", None),
    ("change_plan", "effective"): ("change_plan", Timing.IMMEDIATE),
    ("change_plan", "scheduled"): ("change_plan", Timing.PERIOD_END),
    ("change_plan", "requested"): ("change_plan", Timing.IMMEDIATE),
    ("change_quantity", "effective"): ("change_quantity", Timing.IMMEDIATE),
    ("change_quantity", "scheduled"): ("change_quantity", Timing.PERIOD_END),
    ("change_quantity", "requested"): ("change_quantity", Timing.IMMEDIATE),
    ("suspend", "effective"): ("suspend", None),
    ("reinstate", "effective"): ("reactivate", None),
    # Azure Reinstate InProgress: the lifecycle decides, the operation is PATCHed with its verdict
    ("reinstate", "requested"): ("reactivate", None),
    ("cancel", "effective"): ("cancel", Timing.IMMEDIATE),
    ("cancel", "scheduled"): ("cancel", Timing.PERIOD_END),
    ("cancel", "requested"): ("cancel", Timing.PERIOD_END),
    ("cancel", "withdrawn"): ("undo_scheduled_change", None),
    ("uncancel", "effective"): ("undo_scheduled_change", None),
    ("renew", "effective"): ("renew", None),
    ("create_failed", "failed"): ("reject", None),
    ("refresh", "effective"): None,
}
# The reason a command carries when the channel's event implies one.
COMMAND_REASONS: dict[tuple[str, str], str] = {("create_failed", "failed"): "channel provisioning failed"}


def parse_secrets(value: str | None) -> list[str]:
    """A setting of one or several comma-separated secrets (rotation) as a list."""
    return [s.strip() for s in (value or "").split(",") if s.strip()]


def channel_secrets(stripe: str | None, shopify: str | None) -> dict[str, list[str]]:
    """Signing secrets per channel, only for channels that have one configured."""
    found = {"stripe": parse_secrets(stripe), "shopify": parse_secrets(shopify)}
    return {channel: secrets for channel, secrets in found.items() if secrets}


@dataclass(frozen=True)
class ChannelAuth:
    """Authenticity checks configured per channel (a channel without an entry is not checked).

    ``secrets``: HMAC secrets (Stripe, Shopify); ``jwt``: bearer-token policies (Azure webhook,
    GCP Pub/Sub push); ``sns``: verify AWS SNS envelopes, with ``sns_certificates`` (signing
    certificate URL -> PEM) as obtained by the worker's certificate cache or pinned in settings.
    """

    secrets: Mapping[str, Sequence[str]] = field(default_factory=dict)
    jwt: Mapping[str, JwtPolicy] = field(default_factory=dict)
    sns: bool = False
    sns_certificates: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.secrets or self.jwt or self.sns)

    def with_certificate(self, url: str, pem: str | None) -> ChannelAuth:
        """The same checks, knowing one more SNS signing certificate."""
        if pem is None:
            return self
        return replace(self, sns_certificates={**self.sns_certificates, url: pem})


def split_keys(text: str | None) -> tuple[str, ...]:
    """Key material from a setting: one JWKS document, or every PEM block in the text."""
    if not text or not text.strip():
        return ()
    if text.strip().startswith("{"):
        return (text.strip(),)
    return tuple(re.findall(r"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", text, re.DOTALL))


def _listed(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def channel_auth(settings: Any) -> ChannelAuth:
    """Every authenticity check ``settings`` configures (see ``shared.settings.Settings``)."""
    jwt: dict[str, JwtPolicy] = {}
    azure_jwt = getattr(settings, "azure_webhook_check", "jwt") in ("jwt", "both")
    if azure_jwt and split_keys(settings.azure_webhook_keys):
        jwt["azure_marketplace"] = JwtPolicy(
            keys=split_keys(settings.azure_webhook_keys),
            audience=settings.azure_webhook_audience,
            issuers=_listed(settings.azure_webhook_issuers),
        )
    if split_keys(settings.gcp_push_keys):
        claims: tuple[tuple[str, Any], ...] = ()
        if settings.gcp_push_email:
            claims = (("email", settings.gcp_push_email), ("email_verified", True))
        jwt["gcp_marketplace"] = JwtPolicy(
            keys=split_keys(settings.gcp_push_keys),
            audience=settings.gcp_push_audience,
            issuers=_listed(settings.gcp_push_issuers),
            claims=claims,
        )
    pinned: dict[str, str] = {}
    if settings.aws_sns_certificates:
        loaded = json.loads(settings.aws_sns_certificates)
        pinned = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
    return ChannelAuth(
        secrets=channel_secrets(settings.stripe_webhook_secret, settings.shopify_webhook_secret),
        jwt=jwt,
        sns=bool(settings.aws_sns_verify),
        sns_certificates=pinned,
    )


def sns_envelope(channel: str, body: bytes) -> dict[str, Any] | None:
    """The SNS envelope an ``aws_marketplace`` delivery is, else ``None`` (EventBridge, not JSON)."""
    if channel != "aws_marketplace":
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or "detail-type" in doc:
        return None  # EventBridge reaches the receiver through AWS itself, unsigned
    return doc


def azure_webhook_operation(channel: str, body: bytes) -> tuple[str, str] | None:
    """``(subscription id, operation id)`` of an Azure webhook; ``None`` for anything else.

    Only a webhook (a document with ``action``) names an operation; a resolve or get-subscription
    snapshot comes from the vendor API itself and is not confirmed again.
    """
    if channel != "azure_marketplace":
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or "action" not in doc:
        return None
    sub = doc.get("subscription")
    sid = doc.get("subscriptionId") or (sub.get("id") if isinstance(sub, dict) else None)
    op = doc.get("id")
    if not isinstance(sid, str) or not isinstance(op, str) or not sid.strip() or not op.strip():
        return ("", "")  # a webhook without the ids to confirm: nothing to look up, refused below
    return sid.strip(), op.strip()


def operation_finding(subscription_id: str, operation: Mapping[str, Any] | None) -> RejectionReason | None:
    """The authenticity finding of Azure's ``get operation`` answer for a webhook (documented as the
    alternative to the JWT): the vendor must know the operation, for the subscription the webhook names.
    ``operation`` is ``None`` when the vendor answered 404."""
    if not subscription_id or operation is None:
        return reason("SIGNATURE_INVALID", "Azure does not know the webhook's operation", "id")
    known = str(operation.get("subscriptionId") or subscription_id).strip()
    if known != subscription_id:
        return reason("SIGNATURE_INVALID", "the operation belongs to another subscription", "subscriptionId")
    return None


def check_signature(
    channel: str,
    body: bytes,
    transport: Mapping[str, Any] | None,
    secrets: Mapping[str, Sequence[str]] | ChannelAuth,
    *,
    now: datetime | float,
) -> RejectionReason | None:
    """The authenticity finding for a delivery; ``None`` when valid or when no check is configured.

    Where a check is configured for the channel, an unsigned delivery is ``SIGNATURE_MISSING``
    and a forged one ``SIGNATURE_INVALID`` (or ``SIGNATURE_EXPIRED`` for an old Stripe
    timestamp or an expired token). ``now`` is the receipt time: the worker passes the record
    timestamp. ``secrets`` is a :class:`ChannelAuth`, or HMAC secrets per channel alone.
    """
    auth = secrets if isinstance(secrets, ChannelAuth) else ChannelAuth(secrets=secrets)
    headers_value = transport.get("headers") if isinstance(transport, Mapping) else None
    headers = headers_value if isinstance(headers_value, Mapping) else None
    policy = auth.jwt.get(channel)
    if policy is not None:
        scheme = "Azure webhook" if channel == "azure_marketplace" else "Pub/Sub push"
        return verify_bearer_jwt(headers, policy, now=now, scheme=scheme)
    if channel == "aws_marketplace" and auth.sns:
        envelope = sns_envelope(channel, body)
        if envelope is None:
            return None
        if "Type" not in envelope:  # SQS raw delivery: the inner message alone, nothing to verify
            return reason("SIGNATURE_MISSING", "a raw SNS message carries no signature", "Signature")
        url = str(envelope.get("SigningCertURL") or envelope.get("SigningCertUrl") or "")
        return verify_sns(envelope, auth.sns_certificates.get(url))
    configured = auth.secrets.get(channel)
    if channel not in SIGNED_CHANNELS or not configured:
        return None
    return verify_signature(channel, body, headers, list(configured), now=now)


def command_for(
    change: CanonicalOrderChange, policy: EffectivePolicy, *, plan_id: str | None, catalog: Catalog
) -> CommandParams | None:
    """The typed lifecycle command an accepted change becomes; ``None``: record only.

    Raises pydantic's ``ValidationError`` when the change lacks what the command needs (a
    plan change without a plan): the sender refuses what the lifecycle could not honour.
    The customer of a creation is added by the worker (it comes from the database).
    """
    mapped = COMMANDS.get((change.action, change.phase))
    if mapped is None:
        return None
    command, timing = mapped
    fields: dict[str, Any] = {}
    if command == "create":
        plan = catalog.find(plan_id) if plan_id else None
        fields = {
            "plan_id": plan_id,
            "quantity": change.quantity,
            "billing_interval": change.billing_interval,
            "currency": change.currency
            or (sorted(plan.currencies)[0] if plan and "USD" not in plan.currencies else "USD"),
            # A price the channel charged is the subscription's price; the direct channel's comes
            # from the catalog, so it stays unset and catalog price versions apply at renewal.
            "unit_amount": change.unit_amount
            if change.unit_amount and change.currency and change.channel != "direct"
            else None,
            "trial": bool(change.trial),
            "test": change.test,
            "approval": "manual" if policy.approval == "manual" else None,
            # the people the channel names, with their roles (services/intake/domain/users.py)
            "users": [u.model_dump() for u in subscription_users(change)] or None,
        }
    elif command == "change_plan":
        fields = {"plan_id": plan_id, "quantity": change.quantity, "timing": timing}
    elif command == "change_quantity":
        fields = {"quantity": change.quantity, "timing": timing}
    elif command == "cancel":
        fields = {"timing": timing}
    return params_for(command, **fields)


def _invalid_command(exc: ValidationError) -> RejectionReason:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"][1:]) or None  # [0] is the command's name
    return RejectionReason(
        code="INVALID_COMMAND", field=where, message=f"the lifecycle command: {first['msg']}"
    )


@dataclass(frozen=True)
class Verdict:
    """One canonical change with everything decided about it."""

    index: int
    change: CanonicalOrderChange
    plan_id: str | None
    policy: EffectivePolicy
    region: str | None
    order_value: Decimal | None
    reasons: tuple[RejectionReason, ...]
    impact_score: Decimal
    params: CommandParams | None = None  # None: accepted but only recorded (or rejected)

    @property
    def command(self) -> str | None:
        """The lifecycle command's name, if the change becomes one."""
        return self.params.command if self.params is not None else None

    @property
    def accepted(self) -> bool:
        """True when validation found nothing."""
        return not self.reasons

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``som intake normalize``)."""
        return {
            "index": self.index,
            "outcome": "accepted" if self.accepted else "rejected",
            "reasons": [r.model_dump() for r in self.reasons],
            "plan_id": self.plan_id,
            "region": self.region,
            "order_value": str(self.order_value) if self.order_value is not None else None,
            "impact_score": str(self.impact_score),
            "approval": self.policy.approval,
            "policy_sources": list(self.policy.sources),
            "command": self.command,
            "params": self.params.model_dump(mode="json") if self.params is not None else None,
            "change": self.change.model_dump(mode="json"),
        }


def evaluate(
    channel: str,
    change: CanonicalOrderChange,
    *,
    index: int,
    catalog: Catalog,
    region: str | None,
    customer: CustomerCredit | None,
) -> Verdict:
    """Map, price, validate and route one change (``customer``: credit from the database, if known)."""
    policy = effective_policy(channel, change.account.channel_account_id)
    plan_id = resolve_plan(channel, change)
    value = order_value(change, catalog, plan_id)
    reasons = validate(
        change,
        catalog=catalog,
        plan_id=plan_id,
        customer=customer,
        policy=policy,
        region=region,
        order_value=value,
    )
    routed = None
    if not reasons:
        try:
            routed = command_for(change, policy, plan_id=plan_id, catalog=catalog)
        except ValidationError as exc:
            reasons = [_invalid_command(exc)]
    return Verdict(
        index=index,
        change=change,
        plan_id=plan_id,
        policy=policy,
        region=region,
        order_value=value,
        reasons=tuple(reasons),
        impact_score=impact_score(value, policy.impact_weight),
        params=routed,
    )


@dataclass(frozen=True)
class Interpretation:
    """What a whole payload means: a disposition and, for ``apply``, one verdict per change.

    ``disposition``: ``apply``, ``drop_stale``, ``drop_duplicate``, ``drop_ignored`` (from the
    normalizer), ``rejected`` (signature or invalid document: an ``OrderRejected`` without a
    change) or ``dead_letter`` (not a document of the channel).
    """

    channel: str
    disposition: str
    verdicts: tuple[Verdict, ...] = ()
    reasons: tuple[RejectionReason, ...] = ()  # payload-level rejection reasons
    drop_reason: str | None = None
    error_code: str | None = None  # dead_letter: UnparseableInput.reason_code
    error_message: str | None = None

    @property
    def accepted(self) -> bool:
        """Nothing in the payload is refused (drops count as accepted: they are not errors)."""
        return self.disposition not in ("rejected", "dead_letter") and all(v.accepted for v in self.verdicts)

    def as_list(self) -> list[dict[str, Any]]:
        """One JSON object per change (a payload may mean several), each with the disposition."""
        head: dict[str, Any] = {"channel": self.channel, "disposition": self.disposition}
        if self.disposition == "apply":
            return [{**head, **v.as_dict()} for v in self.verdicts]
        if self.disposition == "rejected":
            return [{**head, "outcome": "rejected", "reasons": [r.model_dump() for r in self.reasons]}]
        if self.disposition == "dead_letter":
            return [
                {
                    **head,
                    "outcome": "dead_letter",
                    "reason_code": self.error_code,
                    "message": self.error_message,
                }
            ]
        return [{**head, "outcome": "dropped", "drop_reason": self.drop_reason}]


def interpret(
    channel: str,
    body: bytes,
    transport: Mapping[str, Any] | None,
    *,
    catalog: Catalog,
    secrets: Mapping[str, Sequence[str]] | ChannelAuth | None = None,
    now: datetime | float | None = None,
    customer: CustomerCredit | None = None,
    region: str | None = None,
) -> Interpretation:
    """The whole decision for one payload, as the worker takes it (minus the database lookups).

    ``secrets`` and ``now``: check signatures as the worker does (skipped when ``now`` is None
    or no secret is configured for the channel). ``region`` overrides the region the payload
    and transport name (the worker falls back to a ``region`` header).
    """
    if secrets and now is not None:
        finding = check_signature(channel, body, transport, secrets, now=now)
        if finding is not None:
            return Interpretation(channel=channel, disposition="rejected", reasons=(finding,))
    try:
        normalized = normalize(channel, body, transport, catalog=catalog)
    except UnparseableInput as exc:
        return Interpretation(
            channel=channel, disposition="dead_letter", error_code=exc.reason_code, error_message=exc.message
        )
    except InvalidOrder as exc:
        return Interpretation(channel=channel, disposition="rejected", reasons=tuple(exc.reasons))
    if normalized.disposition != "apply":
        return Interpretation(
            channel=channel, disposition=normalized.disposition, drop_reason=normalized.drop_reason
        )
    where = region or region_hint(channel, body, transport)
    verdicts = tuple(
        evaluate(channel, change, index=i, catalog=catalog, region=where, customer=customer)
        for i, change in enumerate(normalized.changes)
    )
    return Interpretation(channel=channel, disposition="apply", verdicts=verdicts)
