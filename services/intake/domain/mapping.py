"""Channel plan/product/offer ids -> catalog plan ids, from ``config/channel_mappings.yaml``.

Per channel, the first rule that matches wins:

1. ``plans``: the change's ``plan`` (Azure planId, Stripe price id, Cleverbridge productId ...);
2. ``offers``: the change's ``offer_id`` (AWS offer, GCP private offer);
3. ``products``: the change's ``product`` (AWS product code, Stripe product, Omnistrate service);
4. ``patterns``: regular expressions searched in ``plan``, then ``product``;
5. ``default``: a catalog plan for everything else (``null``: unresolved).

A channel with ``catalog_ids: true`` (``direct``) already speaks catalog ids: its ``plan``
is returned unchanged (validation reports it if the catalog does not know it).
The format is documented in ``docs/intake.md``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.catalog import Catalog
from shared.config_files import load_yaml_model
from shared.contracts.canonical import CHANNELS, CanonicalOrderChange

DEFAULT_MAPPINGS_PATH = Path(__file__).resolve().parent.parent / "config" / "channel_mappings.yaml"


class MappingError(ValueError):
    """The mapping file is malformed."""


class PatternRule(BaseModel):
    """A regular expression (Python syntax, searched) and the catalog plan it maps to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: str
    plan: str

    @field_validator("match")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"bad regular expression {v!r}: {exc}") from exc
        return v


class ChannelMapping(BaseModel):
    """How one channel's ids map onto catalog plans."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    catalog_ids: bool = False
    plans: dict[str, str] = Field(default_factory=dict)
    offers: dict[str, str] = Field(default_factory=dict)
    products: dict[str, str] = Field(default_factory=dict)
    patterns: tuple[PatternRule, ...] = ()
    default: str | None = None

    @field_validator("plans", "offers", "products", mode="before")
    @classmethod
    def _string_keys(cls, v: object) -> object:
        # YAML reads numeric ids (Cleverbridge productId 318402) as ints: keys are ids, always text
        if isinstance(v, dict):
            return {str(k): val for k, val in v.items()}
        return v if v is not None else {}

    def resolve(self, change: CanonicalOrderChange) -> str | None:
        """Catalog plan id for ``change``, or ``None`` when no rule matches."""
        if self.catalog_ids:
            return change.plan
        if change.plan and change.plan in self.plans:
            return self.plans[change.plan]
        if change.offer_id and change.offer_id in self.offers:
            return self.offers[change.offer_id]
        if change.product and change.product in self.products:
            return self.products[change.product]
        for rule in self.patterns:
            for value in (change.plan, change.product):
                if value and re.search(rule.match, value):
                    return rule.plan
        return self.default

    def targets(self) -> set[str]:
        """Every catalog plan id this mapping can return."""
        found = {*self.plans.values(), *self.offers.values(), *self.products.values()}
        found |= {p.plan for p in self.patterns}
        if self.default:
            found.add(self.default)
        return found


class ChannelMappings(BaseModel):
    """The whole mapping file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    channels: dict[str, ChannelMapping] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, v: dict[str, ChannelMapping]) -> dict[str, ChannelMapping]:
        unknown = sorted(set(v) - set(CHANNELS))
        if unknown:
            raise ValueError(f"unknown channels {unknown}; known: {list(CHANNELS)}")
        return v


def load_mappings(path: Path | str | None = None) -> ChannelMappings:
    """Read and validate a mapping file (the packaged one when ``path`` is None)."""
    return load_yaml_model(
        path or DEFAULT_MAPPINGS_PATH, ChannelMappings, MappingError, what="channel mappings"
    )


@functools.lru_cache(maxsize=8)
def cached_mappings(path: str | None = None) -> ChannelMappings:
    """Mapping file loaded once per process and path."""
    return load_mappings(path)


def resolve_plan(
    channel: str, change: CanonicalOrderChange, mappings: ChannelMappings | None = None
) -> str | None:
    """Catalog plan id of a change's channel plan/offer/product; ``None`` when unmapped.

    ``mappings`` defaults to the packaged ``config/channel_mappings.yaml``.
    """
    table = mappings if mappings is not None else cached_mappings()
    rules = table.channels.get(channel)
    return rules.resolve(change) if rules is not None else None


def check_mappings(mappings: ChannelMappings, catalog: Catalog) -> list[str]:
    """Problems of a mapping file against a catalog (targets that name no catalog plan)."""
    problems: list[str] = []
    for channel, rules in sorted(mappings.channels.items()):
        for target in sorted(rules.targets()):
            if catalog.find(target) is None:
                problems.append(f"{channel}: {target!r} is not a catalog plan")
    return problems
