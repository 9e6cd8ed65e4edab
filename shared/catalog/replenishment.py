"""Catalog terms of a replenishment plan: delivery cadence, pricing rule, price cap, shortage policy.

A replenishment plan sells physical goods delivered at a cadence (``P4W``, ``P28D``). Each
cycle's price is fixed when the cycle runs, by one rule:

* ``catalog``: the plan's price version in force on the cycle's due date;
* ``tiers``: graduated volume tiers (each unit priced by the tier it falls in);
* ``price_list``: the SKU's price from ``pricing.updated`` events in force at the due date
  (the catalog price until the first update).

``max_change_percent`` caps how far a cycle's unit price may move from the previous cycle's
(``catalog`` and ``price_list``). ``shortage`` says what a cycle does when stock is short:
``delay`` it by ``delay_days``, or deliver (and bill) the part in stock (``partial``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.money import to_decimal

PricingRule = Literal["catalog", "tiers", "price_list"]
ShortagePolicy = Literal["delay", "partial"]

_CADENCE = re.compile(r"^P(?:(\d+)W|(\d+)D)$")


def cadence_days(cadence: str) -> int:
    """Days of an ISO 8601 cadence in weeks or days (``P4W`` -> 28, ``P28D`` -> 28)."""
    m = _CADENCE.match(cadence.strip().upper())
    if m is None:
        raise ValueError(f"cadence {cadence!r} is not PnW or PnD")
    days = int(m.group(1)) * 7 if m.group(1) else int(m.group(2))
    if days <= 0:
        raise ValueError("a cadence must be at least one day")
    return days


class VolumeTier(BaseModel):
    """Units up to ``up_to`` (inclusive; None = no upper end) cost ``unit_amount`` each."""

    model_config = ConfigDict(frozen=True)

    up_to: int | None = Field(default=None, ge=1)
    unit_amount: Decimal

    @field_validator("unit_amount", mode="before")
    @classmethod
    def _amount(cls, v: object) -> Decimal:
        return to_decimal(v)


class ReplenishmentTerms(BaseModel):
    """How a replenishment plan delivers and prices its cycles."""

    model_config = ConfigDict(frozen=True)

    sku: str
    cadence: str = Field(description="ISO 8601 weeks or days: P4W, P28D")
    pricing: PricingRule = "catalog"
    tiers: tuple[VolumeTier, ...] = ()
    max_change_percent: Decimal | None = Field(default=None, ge=0, description="cap per cycle; None: no cap")
    shortage: ShortagePolicy = "delay"
    delay_days: int = Field(default=7, ge=1)

    @field_validator("cadence")
    @classmethod
    def _cadence(cls, v: str) -> str:
        cadence_days(v)
        return v.strip().upper()

    @model_validator(mode="after")
    def _tiers(self) -> ReplenishmentTerms:
        if self.pricing == "tiers":
            if not self.tiers:
                raise ValueError("pricing: tiers needs tiers")
            bounds = [t.up_to for t in self.tiers]
            if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
                raise ValueError("only the last tier is open-ended, and it must be")
            inner = [b for b in bounds if b is not None]
            if inner != sorted(set(inner)):
                raise ValueError("tier bounds must increase")
        return self

    @property
    def days(self) -> int:
        """The cadence in days."""
        return cadence_days(self.cadence)
