"""Intake policy per channel and per account, from ``config/policy.yaml``.

Three layers, later ones win field by field: ``defaults`` < ``channels.<channel>`` <
``accounts[]`` entries matching the account (entries without ``channel`` first, then the
ones for this channel). Only the fields a layer names override; ``null`` is a value
(``credit_limit: null`` removes a limit set by an earlier layer).
"""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.config_files import load_yaml_model
from shared.contracts.canonical import CHANNELS
from shared.money import to_decimal

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "config" / "policy.yaml"

Approval = Literal["auto", "manual"]


class PolicyError(ValueError):
    """The policy file is malformed."""


def _decimal(v: object) -> Decimal | None:
    return None if v is None else to_decimal(v)  # refuses floats: write amounts as strings in YAML


class PolicySettings(BaseModel):
    """Every policy knob with its built-in default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approval: Approval = Field(default="auto", description="manual: orders wait for an operator")
    credit_check: bool = Field(default=True, description="false: the channel already charged the buyer")
    credit_limit: Decimal | None = Field(
        default=None, description="limit used instead of the customer's stored one (enterprise accounts)"
    )
    impact_weight: Decimal = Field(default=Decimal(1), description="rejection impact = order value x weight")
    default_order_value: Decimal = Field(default=Decimal(100), description="order value assumed when unknown")
    require_plan: bool = Field(default=True, description="reject orders whose plan maps to no catalog plan")
    check_availability: bool = Field(default=True, description="region and stock checks")
    check_catalog: bool = Field(default=True, description="billing interval, currency and quantity checks")

    @field_validator("credit_limit", "impact_weight", "default_order_value", mode="before")
    @classmethod
    def _amounts(cls, v: object) -> Decimal | None:
        return _decimal(v)

    @field_validator("impact_weight", "default_order_value")
    @classmethod
    def _not_negative(cls, v: Decimal) -> Decimal:
        if v < 0:
            raise ValueError("must not be negative")
        return v


class PolicyOverride(BaseModel):
    """A layer: any subset of :class:`PolicySettings` fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approval: Approval | None = None
    credit_check: bool | None = None
    credit_limit: Decimal | None = None
    impact_weight: Decimal | None = None
    default_order_value: Decimal | None = None
    require_plan: bool | None = None
    check_availability: bool | None = None
    check_catalog: bool | None = None
    note: str | None = Field(default=None, description="why this override exists (ignored by the code)")

    @field_validator("credit_limit", "impact_weight", "default_order_value", mode="before")
    @classmethod
    def _amounts(cls, v: object) -> Decimal | None:
        return _decimal(v)

    @model_validator(mode="after")
    def _only_limit_nullable(self) -> PolicyOverride:
        # null means "no limit" for credit_limit; for any other knob it would be a typo
        for name in self.model_fields_set:
            if name not in ("credit_limit", "note") and getattr(self, name) is None:
                if name in PolicySettings.model_fields:
                    raise ValueError(f"{name} cannot be null")
        return self

    def settings(self) -> dict[str, Any]:
        """The policy fields this layer sets (explicit nulls included); notes and keys left out."""
        knobs = PolicySettings.model_fields
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if k in knobs}


class AccountOverride(PolicyOverride):
    """A layer for one account, optionally only on one channel."""

    account_id: str
    channel: str | None = None


class PolicyFile(BaseModel):
    """The whole policy file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    defaults: PolicySettings = Field(default_factory=PolicySettings)
    channels: dict[str, PolicyOverride] = Field(default_factory=dict)
    accounts: tuple[AccountOverride, ...] = ()

    @model_validator(mode="after")
    def _known_channels(self) -> PolicyFile:
        named = set(self.channels) | {a.channel for a in self.accounts if a.channel}
        unknown = sorted(named - set(CHANNELS))
        if unknown:
            raise ValueError(f"unknown channels {unknown}; known: {list(CHANNELS)}")
        return self


class EffectivePolicy(PolicySettings):
    """The merged policy for one (channel, account), with the layers it came from."""

    channel: str
    account_id: str | None = None
    sources: tuple[str, ...] = ("defaults",)


def load_policy(path: Path | str | None = None) -> PolicyFile:
    """Read and validate a policy file (the packaged one when ``path`` is None)."""
    return load_yaml_model(path or DEFAULT_POLICY_PATH, PolicyFile, PolicyError, what="intake policy")


@functools.lru_cache(maxsize=8)
def cached_policy(path: str | None = None) -> PolicyFile:
    """Policy file loaded once per process and path."""
    return load_policy(path)


def effective_policy(
    channel: str, account_id: str | None, policy: PolicyFile | None = None
) -> EffectivePolicy:
    """Merge defaults < channel < account into the policy that applies to one order.

    ``policy`` defaults to the packaged ``config/policy.yaml``.
    """
    file = policy if policy is not None else cached_policy()
    merged: dict[str, Any] = file.defaults.model_dump()
    sources = ["defaults"]
    channel_layer = file.channels.get(channel)
    if channel_layer is not None:
        merged.update(channel_layer.settings())
        sources.append(f"channel:{channel}")
    if account_id:
        matching = [a for a in file.accounts if a.account_id == account_id and a.channel in (None, channel)]
        matching.sort(key=lambda a: a.channel is not None)  # channel-specific entries win
        for layer in matching:
            merged.update(layer.settings())
            sources.append(f"account:{layer.channel + '/' if layer.channel else ''}{account_id}")
    return EffectivePolicy(**merged, channel=channel, account_id=account_id, sources=tuple(sources))


def default_order_value(policy: PolicyFile | None = None) -> Decimal:
    """The policy file's default order value (used when a rejection's value is unknown)."""
    file = policy if policy is not None else cached_policy()
    return file.defaults.default_order_value
