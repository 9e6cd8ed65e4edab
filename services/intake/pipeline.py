"""What a channel payload means for order management, decided without I/O.

The one place that strings the intake domain together: signature check, normalization,
plan mapping, policy, order value, validation and the lifecycle command an accepted change
becomes. The worker (``handlers.py``) calls it with the customer's credit read from
PostgreSQL; ``som intake normalize`` and the STACKIT poller call it without a database, so
the three agree by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from services.intake.domain.errors import InvalidOrder, UnparseableInput
from services.intake.domain.impact import impact_score
from services.intake.domain.mapping import resolve_plan
from services.intake.domain.normalizers import normalize, region_hint
from services.intake.domain.policy import EffectivePolicy, effective_policy
from services.intake.domain.pricing import order_value
from services.intake.domain.signatures import verify_signature
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


def check_signature(
    channel: str,
    body: bytes,
    transport: Mapping[str, Any] | None,
    secrets: Mapping[str, Sequence[str]],
    *,
    now: datetime | float,
) -> RejectionReason | None:
    """The signature finding for a delivery; ``None`` when valid or when no secret is configured.

    Where a secret is configured for the channel, an unsigned delivery is ``SIGNATURE_MISSING``
    and a forged one ``SIGNATURE_INVALID`` (or ``SIGNATURE_EXPIRED`` for an old Stripe
    timestamp). ``now`` is the receipt time: the worker passes the record timestamp.
    """
    configured = secrets.get(channel)
    if channel not in SIGNED_CHANNELS or not configured:
        return None
    headers = transport.get("headers") if isinstance(transport, Mapping) else None
    return verify_signature(
        channel, body, headers if isinstance(headers, Mapping) else None, list(configured), now=now
    )


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
    secrets: Mapping[str, Sequence[str]] | None = None,
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
