"""The canonical intake model: what any channel's payload means, in one vocabulary.

Field names and vocabularies follow the channel format study (``canonical`` objects of
the sample ``.expected.json`` files). Amounts are decimal strings in major units with
the currency's ISO 4217 digits; times are RFC 3339 UTC with milliseconds; ``None``
means "not carried by the channel", never zero.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
    "pending", "trialing", "active", "cancel_scheduled", "suspended", "cancelled", "failed", "unknown"
]
AmountBasis = Literal["per_interval", "contract_commit"]
Disposition = Literal["apply", "drop_stale", "drop_duplicate"]

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


class CanonicalAccount(BaseModel):
    """The tenant, project, shop or cloud account the order belongs to."""

    model_config = ConfigDict(frozen=True)

    channel_account_id: str | None = None


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
    status_after: StatusAfter
    trial: bool | None = None
    test: bool = False


class NormalizedPayload(BaseModel):
    """What one inbound payload means: a disposition and zero or more canonical changes."""

    model_config = ConfigDict(frozen=True)

    channel: str
    disposition: Disposition = "apply"
    changes: tuple[CanonicalOrderChange, ...] = ()
    drop_reason: str | None = None
