"""The canonical intake model: what any channel's payload means, in one vocabulary.

Field names and vocabularies follow the channel format study (``canonical`` objects of
the sample ``.expected.json`` files). Amounts are decimal strings in major units with
the currency's ISO 4217 digits; times are RFC 3339 UTC with milliseconds; ``None``
means "not carried by the channel", never zero.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.money import normalize_currency

Action = Literal[
    "create",
    "activate",
    "change_plan",
    "change_quantity",
    "suspend",
    "reinstate",
    "cancel",
    "uncancel",
    "renew",
    "refresh",
    "create_failed",
]
Phase = Literal["requested", "scheduled", "effective", "failed", "withdrawn"]
StatusAfter = Literal[
    "pending",
    "trialing",
    "active",
    "cancel_scheduled",
    "suspended",
    "cancelled",
    "failed",
    "unknown",
    # added: a billing failure the channel retries (Stripe past_due/unpaid, Cleverbridge grace)
    "past_due",
]
AmountBasis = Literal["per_interval", "contract_commit"]
# ``drop_ignored`` (added): a well-formed payload of a type that means no subscription change
# (an SNS subscription confirmation, a Stripe trial reminder ...): dropped visibly, not dead-lettered.
Disposition = Literal["apply", "drop_stale", "drop_duplicate", "drop_ignored"]

CHANNELS: tuple[str, ...] = (
    "direct",
    "azure_marketplace",
    "aws_marketplace",
    "gcp_marketplace",
    "stripe",
    "shopify",
    "cleverbridge",
    "stackit_marketplace",
    "omnistrate",
)


class CanonicalCustomer(BaseModel):
    """The buyer as the channel names them."""

    model_config = ConfigDict(frozen=True)

    channel_customer_id: str | None = None
    email: str | None = None
    name: str | None = None
    country: str | None = Field(default=None, description="billing country (ISO 3166-1 alpha-2), for tax")


class CanonicalAccount(BaseModel):
    """The tenant, project, shop or cloud account the order belongs to."""

    model_config = ConfigDict(frozen=True)

    channel_account_id: str | None = None


class CanonicalUser(BaseModel):
    """A person the channel names for the subscription and the role intake gives them."""

    model_config = ConfigDict(frozen=True)

    email: str
    role: Literal["owner", "admin", "editor", "reader"]
    source: str | None = None


class CanonicalOrderChange(BaseModel):
    """One change to one channel subscription, in the shared vocabulary."""

    model_config = ConfigDict(frozen=True)

    action: Action
    phase: Phase
    channel: str
    channel_subscription_id: str
    replaces_channel_subscription_id: str | None = None
    channel_event_id: str | None = None
    customer: CanonicalCustomer = Field(default_factory=CanonicalCustomer)
    account: CanonicalAccount = Field(default_factory=CanonicalAccount)
    product: str | None = None
    plan: str | None = None
    offer_id: str | None = None
    quantity: int | None = None
    billing_interval: str | None = Field(default=None, description="ISO 8601 duration: P1M, P1Y, P2W ...")
    currency: str | None = Field(default=None, description="ISO 4217, upper case")
    unit_amount: str | None = Field(default=None, description="decimal string, major units")
    amount: str | None = Field(default=None, description="decimal string, major units, per interval")
    amount_basis: AmountBasis | None = None
    effective_at: str | None = Field(default=None, description="RFC 3339 UTC with milliseconds")
    # ``None`` when the payload alone does not say (AWS entitlement-updated: only a lookup tells).
    status_after: StatusAfter | None
    trial: bool | None = None
    test: bool = False
    # Carried from the normalizer to the create command; left out of the canonical JSON (the
    # samples and FORMATS.md define that document), so it shows in the command's params instead.
    users: tuple[CanonicalUser, ...] = Field(default=(), exclude=True)


class NormalizedPayload(BaseModel):
    """What one inbound payload means: a disposition and zero or more canonical changes."""

    model_config = ConfigDict(frozen=True)

    channel: str
    disposition: Disposition = "apply"
    changes: tuple[CanonicalOrderChange, ...] = ()
    drop_reason: str | None = None


_REASON_CODE = r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$"


class RejectionReason(BaseModel):
    """One machine-readable reason an order is refused (or a payload is invalid).

    ``code`` is UPPER_SNAKE (``MISSING_FIELD``, ``UNKNOWN_PLAN``, ``CREDIT_HOLD`` ...; the
    list is in ``docs/intake.md``), ``field`` the dotted path of the offending field when
    there is one, ``message`` a sentence for humans.
    """

    model_config = ConfigDict(frozen=True)

    code: str = Field(pattern=_REASON_CODE)
    field: str | None = None
    message: str


_DURATION = re.compile(r"^P(?=\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?$", re.ASCII)


class DirectCustomer(BaseModel):
    """The buyer of a ``direct`` order."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    id: str = Field(min_length=1)
    email: str | None = None
    name: str | None = None
    country: str | None = Field(
        default=None, pattern=r"^[A-Za-z]{2}$", description="billing country (ISO 3166-1 alpha-2), for tax"
    )
    region: str | None = Field(default=None, description="availability region: eu, us, apac ...")

    @field_validator("country")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value is not None else None


class DirectOrder(BaseModel):
    """An order in the project's own ``direct`` channel format (see ``docs/intake.md``).

    ``plan`` is a catalog plan id; prices are not sent, they come from the catalog.
    Unknown fields are ignored so producers can add fields without breaking intake.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    order_id: str = Field(min_length=1, description="the producer's id of this order; dedupe key")
    customer: DirectCustomer
    account_id: str | None = None
    plan: str = Field(min_length=1, description="catalog plan id: starter, pro, enterprise ...")
    quantity: int = Field(default=1, ge=0)
    billing_interval: str = Field(default="P1M", description="ISO 8601 duration: P1M, P3M, P1Y ...")
    currency: str = Field(default="USD", description="ISO 4217")
    effective_at: str = Field(description="RFC 3339 with a zone designator")
    trial: bool = False
    test: bool = False
    action: Action = "create"
    phase: Phase = "effective"
    subscription_id: str | None = Field(
        default=None, description="the producer's subscription id; defaults to order_id (a new subscription)"
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        return normalize_currency(v)

    @field_validator("billing_interval")
    @classmethod
    def _interval(cls, v: str) -> str:
        value = v.strip().upper()
        if not _DURATION.match(value):
            raise ValueError(f"not an ISO 8601 duration: {v!r}")
        return value

    @field_validator("effective_at")
    @classmethod
    def _effective_at(cls, v: str) -> str:
        try:
            parsed = datetime.fromisoformat(v.strip().replace("z", "Z").replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"not an RFC 3339 timestamp: {v!r}") from exc
        if parsed.tzinfo is None:
            raise ValueError("effective_at needs a zone designator (Z or +hh:mm)")
        return v.strip()
