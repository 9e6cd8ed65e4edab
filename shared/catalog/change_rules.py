"""Plan-change rules: when a plan change takes effect and how its proration is invoiced.

One definition read by both sides of a change: the service that decides the subscription's
terms takes the timing from these rules when a command does not say, and the service that
invoices takes the timing and the invoicing. The rules live in the ``plan_change`` section
of a policy YAML file; other sections of that file are ignored here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.catalog import Catalog
from shared.contracts.commands import Timing, TimingInput

ChangeClass = Literal["upgrade", "downgrade", "sidegrade"]
Invoicing = Literal["pending", "invoice_immediately"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ChangeRule(_Frozen):
    """When a change takes effect and how its proration is invoiced."""

    timing: TimingInput  # policy files written before may still say end_of_term
    invoicing: Invoicing = "pending"

    def overridden(self, timing: Timing | None, invoicing: Invoicing | None) -> ChangeRule:
        """This rule with a command's explicit choices applied."""
        return ChangeRule(timing=timing or self.timing, invoicing=invoicing or self.invoicing)


class PairRule(ChangeRule):
    """A rule for one (from plan, to plan) pair; ``*`` matches any plan."""

    from_plan: str = Field(alias="from")
    to_plan: str = Field(alias="to")

    def matches(self, from_plan: str, to_plan: str) -> bool:
        """True when this pair rule applies to the change."""
        return self.from_plan in ("*", from_plan) and self.to_plan in ("*", to_plan)


class PlanChangePolicy(_Frozen):
    """Pair rules first, then the rule for the change's class (by catalog tier)."""

    pairs: tuple[PairRule, ...] = ()
    upgrade: ChangeRule = ChangeRule(timing=Timing.IMMEDIATE)
    downgrade: ChangeRule = ChangeRule(timing=Timing.PERIOD_END)
    sidegrade: ChangeRule = ChangeRule(timing=Timing.IMMEDIATE)
    interval_change_anchor: Literal["realign", "keep"] = Field(
        default="realign",
        description="a new billing interval restarts the cycle on the change date (Stripe, Kill Bill's "
        "annual items) or keeps the billing day",
    )


def classify_plan_change(catalog: Catalog, from_plan: str, to_plan: str) -> ChangeClass:
    """Upgrade, downgrade or sidegrade, by catalog tier."""
    a, b = catalog.plan(from_plan).tier, catalog.plan(to_plan).tier
    if b > a:
        return "upgrade"
    if b < a:
        return "downgrade"
    return "sidegrade"


def rule_for(
    rules: PlanChangePolicy,
    catalog: Catalog,
    from_plan: str,
    to_plan: str,
    *,
    timing: Timing | None = None,
    invoicing: Invoicing | None = None,
) -> ChangeRule:
    """The rule for a plan change: first matching pair, else the class rule; command overrides last."""
    for pair in rules.pairs:
        if pair.matches(from_plan, to_plan):
            return ChangeRule(timing=pair.timing, invoicing=pair.invoicing).overridden(timing, invoicing)
    rule: ChangeRule = getattr(rules, classify_plan_change(catalog, from_plan, to_plan))
    return rule.overridden(timing, invoicing)


def load_plan_change_rules(path: Path | str) -> PlanChangePolicy:
    """The ``plan_change`` section of a policy file (defaults where the file has none)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read plan-change rules from {path}: {exc}") from exc
    try:
        return PlanChangePolicy.model_validate(data.get("plan_change") or {})
    except ValidationError as exc:
        raise ValueError(f"{path}: plan_change: {exc.errors()[0]['msg']}") from exc
