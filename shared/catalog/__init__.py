"""The product catalog: plans, versioned prices, features and limits, loaded from YAML."""

from __future__ import annotations

import functools
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.catalog.conventions import (
    Alignment,
    ChargeMode,
    ProrationConvention,
    ProrationOverride,
)
from shared.catalog.replenishment import ReplenishmentTerms
from shared.config_files import load_yaml_model
from shared.money import is_exact, normalize_currency, to_decimal

DEFAULT_CATALOG_PATH = Path(__file__).with_name("catalog.yaml")

BillingInterval = Literal["P1W", "P1M", "P3M", "P1Y"]


class CatalogError(ValueError):
    """The catalog file is malformed, or a lookup names no plan or price."""


class PlanPrice(BaseModel):
    """One version of a plan's price for one currency and billing interval."""

    model_config = ConfigDict(frozen=True)

    currency: str
    billing_interval: BillingInterval
    unit_amount: Decimal
    effective_from: date

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        return normalize_currency(v)

    @field_validator("unit_amount", mode="before")
    @classmethod
    def _amount(cls, v: object) -> Decimal:
        return to_decimal(v)

    @model_validator(mode="after")
    def _exact(self) -> PlanPrice:
        if not is_exact(self.unit_amount, self.currency):
            raise ValueError(f"{self.unit_amount} is not exact in {self.currency}")
        return self


class QuantityBounds(BaseModel):
    model_config = ConfigDict(frozen=True)
    min: int = 1
    max: int = 1_000_000


FeatureKind = Literal["boolean", "limit", "metered"]
MergeRule = Literal["sum", "max"]


class FeatureDefinition(BaseModel):
    """How a feature behaves: a switch, a numeric limit, or a metered limit per period.

    ``merge`` says how two grants of one limit combine (two subscriptions of a customer, a plan and
    its add-ons): ``sum`` adds them, ``max`` keeps the larger. ``period`` is when a metered
    feature's counter resets (``P1D`` daily, ``P1M`` with the billing period).
    """

    model_config = ConfigDict(frozen=True)

    kind: FeatureKind = "boolean"
    merge: MergeRule = "sum"
    period: Literal["P1D", "P1M"] | None = None

    @model_validator(mode="after")
    def _period(self) -> FeatureDefinition:
        if (self.kind == "metered") != (self.period is not None):
            raise ValueError("a metered feature needs a period, and only a metered one has one")
        return self


BOOLEAN_FEATURE = FeatureDefinition(kind="boolean")
DEFAULT_LIMIT = FeatureDefinition(kind="limit", merge="sum")


class GrantVersion(BaseModel):
    """A dated edit of what a plan grants: from ``effective_from``, these fields replace the plan's own.

    Under ``renewal_pricing: grandfathered`` a subscription keeps the version in force when it
    started (as it keeps its price); under ``current`` every subscription follows the latest.
    """

    model_config = ConfigDict(frozen=True)

    effective_from: date
    features: tuple[str, ...] | None = None
    limits: dict[str, int] | None = None
    instances: int | None = None


class Plan(BaseModel):
    """A sellable plan (or add-on) with its prices, features and limits."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    product: str
    kind: Literal["base", "addon"] = "base"
    tier: int = 0
    trial_days: int = 0
    quantity: QuantityBounds = Field(default_factory=QuantityBounds)
    regions: tuple[str, ...] = ()
    stock: int | None = None  # physical replenishment plans only; None = not stock-limited
    prices: tuple[PlanPrice, ...]
    features: tuple[str, ...] = ()
    limits: dict[str, int] = Field(default_factory=dict)
    per_seat: tuple[str, ...] = ()  # limits multiplied by the subscription's quantity
    instances: int = 0
    charge_mode: ChargeMode = Field(
        default="in_advance",
        description="in_advance: each period billed at its start; in_arrears: at its end",
    )
    proration: ProrationOverride | None = Field(
        default=None, description="overrides the catalog's convention"
    )
    grant_versions: tuple[GrantVersion, ...] = ()
    replenishment: ReplenishmentTerms | None = Field(
        default=None, description="physical goods delivered at a cadence (billing runs each cycle)"
    )

    def grants_on(self, on: date | None) -> tuple[tuple[str, ...], dict[str, int], int]:
        """Features, limits and instances the plan grants on ``on`` (None: the latest version)."""
        features, limits, instances = self.features, dict(self.limits), self.instances
        for v in sorted(self.grant_versions, key=lambda v: v.effective_from):
            if on is not None and v.effective_from > on:
                break
            features = v.features if v.features is not None else features
            limits = dict(v.limits) if v.limits is not None else limits
            instances = v.instances if v.instances is not None else instances
        return features, limits, instances

    @model_validator(mode="after")
    def _per_seat_limits(self) -> Plan:
        unknown = set(self.per_seat) - set(self.limits)
        if unknown:
            raise ValueError(f"plan {self.id}: per_seat names no limit of the plan: {sorted(unknown)}")
        return self

    @property
    def billing_intervals(self) -> frozenset[str]:
        """Billing intervals this plan has a price for."""
        return frozenset(p.billing_interval for p in self.prices)

    @property
    def currencies(self) -> frozenset[str]:
        """Currencies this plan is priced in."""
        return frozenset(p.currency for p in self.prices)

    def price_on(self, currency: str, billing_interval: str, on: date) -> PlanPrice:
        """The price version in force on ``on`` for this currency and interval."""
        cur = normalize_currency(currency)
        versions = sorted(
            (p for p in self.prices if p.currency == cur and p.billing_interval == billing_interval),
            key=lambda p: p.effective_from,
        )
        in_force = [p for p in versions if p.effective_from <= on]
        if not in_force:
            raise CatalogError(f"plan {self.id} has no {cur} {billing_interval} price on {on}")
        return in_force[-1]


class Catalog(BaseModel):
    """All plans, keyed by id."""

    model_config = ConfigDict(frozen=True)

    renewal_pricing: Literal["grandfathered", "current"] = "grandfathered"
    features: dict[str, FeatureDefinition] = Field(default_factory=dict)

    proration: ProrationConvention = Field(default_factory=ProrationConvention)
    alignment: dict[str, Alignment] = Field(
        default_factory=dict,
        description="per billing interval (P1M, P1Y, ...): bill on the subscription's own date, the "
        "account's billing day, or the calendar (1st of month/quarter/year); unset = subscription",
    )
    plans: tuple[Plan, ...]

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        ids = [p.id for p in self.plans]
        if len(ids) != len(set(ids)):
            raise ValueError("plan ids must be unique")
        return self

    def plan(self, plan_id: str) -> Plan:
        """The plan with this id; raises :class:`CatalogError` if there is none."""
        for p in self.plans:
            if p.id == plan_id:
                return p
        raise CatalogError(f"unknown plan {plan_id!r}")

    def feature(self, name: str, *, numeric: bool) -> FeatureDefinition:
        """The definition of a feature; an undeclared one is a boolean, or a summed limit if ``numeric``."""
        found = self.features.get(name)
        if found is not None:
            return found
        return DEFAULT_LIMIT if numeric else BOOLEAN_FEATURE

    def proration_for(self, plan_id: str) -> ProrationConvention:
        """The proration convention of a plan: the catalog's, with the plan's override applied."""
        plan = self.find(plan_id)
        if plan is None or plan.proration is None:
            return self.proration
        return plan.proration.over(self.proration)

    def charge_mode(self, plan_id: str) -> ChargeMode:
        """``in_advance`` or ``in_arrears`` for a plan (unknown plans bill in advance)."""
        plan = self.find(plan_id)
        return plan.charge_mode if plan is not None else "in_advance"

    def alignment_for(self, billing_interval: str) -> Alignment:
        """Which day a billing interval's items bill on (``subscription`` unless configured)."""
        return self.alignment.get(billing_interval, "subscription")

    def find(self, plan_id: str) -> Plan | None:
        """The plan with this id, or ``None``."""
        return next((p for p in self.plans if p.id == plan_id), None)


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Read and validate a catalog YAML file (the packaged default when ``path`` is None)."""
    return load_yaml_model(path or DEFAULT_CATALOG_PATH, Catalog, CatalogError, what="catalog")


@functools.lru_cache(maxsize=8)
def cached_catalog(path: str | None = None) -> Catalog:
    """Catalog loaded once per process and path."""
    return load_catalog(path)
