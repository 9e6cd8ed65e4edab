"""Tax per country and region from a configurable rate table, computed per line."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.billing.domain.model import Line, TaxProfile
from shared.config_files import load_yaml_model
from shared.money import round_half_up, to_decimal

DEFAULT_TAX_RATES_PATH = Path(__file__).resolve().parent.parent / "config" / "tax_rates.yaml"


class TaxError(ValueError):
    """No tax rate is configured for the customer's country, or the table is malformed."""


def _rate(v: object) -> Decimal:
    rate = to_decimal(v)
    if not Decimal(0) <= rate < Decimal(1):
        raise ValueError(f"tax rate must be in [0, 1): {v!r}")
    return rate


class RateVersion(BaseModel):
    """A rate in force from ``effective_from`` (inclusive) until the next version."""

    model_config = ConfigDict(frozen=True)

    rate: Decimal
    effective_from: date

    _v = field_validator("rate", mode="before")(lambda cls, v: _rate(v))


class CountryRates(BaseModel):
    """Country-wide rate, its history, and region rates that replace it."""

    model_config = ConfigDict(frozen=True)

    rate: Decimal = Decimal(0)
    regions: dict[str, Decimal] = Field(default_factory=dict)
    history: tuple[RateVersion, ...] = ()

    _v = field_validator("rate", mode="before")(lambda cls, v: _rate(v))

    @field_validator("regions", mode="before")
    @classmethod
    def _regions(cls, v: object) -> dict[str, Decimal]:
        if not isinstance(v, dict):
            raise ValueError("regions must be a mapping")
        return {str(k).upper(): _rate(r) for k, r in v.items()}

    def rate_on(self, on: date) -> Decimal:
        """Country rate in force on ``on``: the latest history version, else ``rate``."""
        in_force = [v for v in sorted(self.history, key=lambda v: v.effective_from) if v.effective_from <= on]
        return in_force[-1].rate if in_force else self.rate


class TaxTable(BaseModel):
    """Tax rates by ISO 3166-1 country and ISO 3166-2 region."""

    model_config = ConfigDict(frozen=True)

    default_rate: Decimal | None = None
    countries: dict[str, CountryRates]
    missing_country: Literal["error", "untaxed"] = Field(
        default="error",
        description="a customer without any country: an error (default) or not taxed (rate 0)",
    )

    @field_validator("default_rate", mode="before")
    @classmethod
    def _default(cls, v: object) -> Decimal | None:
        return None if v is None else _rate(v)

    @field_validator("countries", mode="before")
    @classmethod
    def _countries(cls, v: object) -> dict[str, object]:
        if not isinstance(v, dict):
            raise ValueError("countries must be a mapping")
        # A bare string is shorthand for {rate: ...}.
        return {str(k).upper(): ({"rate": r} if isinstance(r, str | int) else r) for k, r in v.items()}

    def rate_for(self, profile: TaxProfile, on: date) -> Decimal:
        """The rate that applies to a customer on ``on``; ``0`` for tax-exempt customers.

        A region rate (``US-CA``, or ``CA`` with country ``US``) replaces the country rate.
        """
        if profile.tax_exempt:
            return Decimal(0)
        if not profile.country and self.missing_country == "untaxed":
            return Decimal(0)
        country = (profile.country or "").upper()
        entry = self.countries.get(country)
        if entry is None:
            if self.default_rate is not None:
                return self.default_rate
            raise TaxError(f"no tax rate configured for country {profile.country!r}")
        if profile.region:
            region = profile.region.upper()
            key = region if "-" in region else f"{country}-{region}"
            if key in entry.regions:
                return entry.regions[key]
        return entry.rate_on(on)


def load_tax_table(path: Path | str | None = None) -> TaxTable:
    """Read and validate a tax rate table (the packaged default when ``path`` is None)."""
    return load_yaml_model(path or DEFAULT_TAX_RATES_PATH, TaxTable, TaxError, what="tax table")


def tax_line(line: Line, rate: Decimal, currency: str) -> Line:
    """The line with its tax: ``amount * rate`` rounded half-up to the minor unit, per line."""
    tax = round_half_up(line.amount * rate, currency)
    if tax == 0:
        tax = abs(tax)  # a credit at 0 % carries "0.00", never "-0.00"
    return line.model_copy(update={"tax_rate": rate, "tax_amount": tax})
