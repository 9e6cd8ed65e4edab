"""What a channel payload means for order management, decided without I/O.

The one place that strings the intake domain together: signature check, normalization,
plan mapping, policy, order value, validation and the lifecycle command an accepted change
becomes. The worker (``handlers.py``) calls it with the customer's credit read from
PostgreSQL; ``som intake normalize`` and the STACKIT poller call it without a database, so
the three agree by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

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

# Channels whose deliveries carry a signature this worker can check (with a configured secret).
SIGNED_CHANNELS: tuple[str, ...] = ("stripe", "shopify")

# Canonical (action, phase) -> lifecycle command and its params. ``None`` = recorded, no command.
COMMANDS: dict[tuple[str, str], tuple[str, dict[str, Any]] | None] = {
    ("create", "effective"): ("create", {}),
    ("create", "requested"): ("create", {"awaiting_channel_activation": True}),
    ("create", "scheduled"): ("create", {}),
    ("activate", "effective"): ("approve", {}),
    ("activate", "requested"): ("approve", {}),
    ("change_plan", "effective"): ("change_plan", {"timing": "immediate"}),
    ("change_plan", "scheduled"): ("change_plan", {"timing": "period_end"}),
    ("change_plan", "requested"): ("change_plan", {"timing": "immediate"}),
    ("change_quantity", "effective"): ("change_quantity", {"timing": "immediate"}),
    ("change_quantity", "scheduled"): ("change_quantity", {"timing": "period_end"}),
    ("change_quantity", "requested"): ("change_quantity", {"timing": "immediate"}),
    ("suspend", "effective"): ("suspend", {}),
    ("reinstate", "effective"): ("reactivate", {}),
    ("cancel", "effective"): ("cancel", {"timing": "immediate"}),
    ("cancel", "scheduled"): ("cancel", {"timing": "end_of_term"}),
    ("cancel", "requested"): ("cancel", {"timing": "end_of_term"}),
    ("cancel", "withdrawn"): ("undo_scheduled_change", {"what": "cancellation"}),
    ("uncancel", "effective"): ("undo_scheduled_change", {"what": "cancellation"}),
    ("renew", "effective"): ("renew", {}),
    ("create_failed", "failed"): ("reject", {"reason": "channel provisioning failed"}),
    ("refresh", "effective"): None,
}


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


def command_for(change: CanonicalOrderChange, policy: EffectivePolicy) -> tuple[str, dict[str, Any]] | None:
    """The lifecycle command (name, params) an accepted change becomes; ``None``: record only."""
    mapped = COMMANDS.get((change.action, change.phase))
    if mapped is None:
        return None
    command, params = mapped[0], dict(mapped[1])
    if change.replaces_channel_subscription_id:
        params["replaces_channel_subscription_id"] = change.replaces_channel_subscription_id
    if policy.approval == "manual":
        params["approval"] = "manual"
    return command, params


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
    command: str | None = None  # None: accepted but only recorded (or rejected)
    params: dict[str, Any] = field(default_factory=dict)

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
            "params": self.params,
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
    routed = None if reasons else command_for(change, policy)
    return Verdict(
        index=index,
        change=change,
        plan_id=plan_id,
        policy=policy,
        region=region,
        order_value=value,
        reasons=tuple(reasons),
        impact_score=impact_score(value, policy.impact_weight),
        command=routed[0] if routed else None,
        params=routed[1] if routed else {},
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
            return [{**head, "outcome": "dead_letter", "reason_code": self.error_code,
                     "message": self.error_message}]
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
