"""Billing policy as configuration: plan-change rules, cancellation, pause, payment terms, dunning."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.billing.domain.model import Invoicing, Timing
from shared.catalog import Catalog
from shared.catalog.change_rules import (
    ChangeClass,
    ChangeRule,
    PairRule,
    PlanChangePolicy,
    classify_plan_change,
    rule_for,
)
from shared.config_files import load_yaml_model
from shared.contracts.commands import TimingInput

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "config" / "billing_policy.yaml"

# The plan-change rules are shared with the lifecycle (shared.catalog.change_rules); re-exported here.
__all__ = [
    "DEFAULT_POLICY_PATH",
    "AddonPolicy",
    "BillingPolicy",
    "CancellationPolicy",
    "ChangeClass",
    "ChangeRule",
    "DunningPolicy",
    "OneOffPolicy",
    "PairRule",
    "PausePolicy",
    "PaymentTermsPolicy",
    "PlanChangePolicy",
    "PolicyError",
    "QuantityChangePolicy",
    "classify_plan_change",
    "load_billing_policy",
    "plan_change_rule",
]


class PolicyError(ValueError):
    """The billing policy file is malformed."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class QuantityChangePolicy(_Frozen):
    """Rules for raising and lowering a quantity."""

    increase: ChangeRule = ChangeRule(timing=Timing.IMMEDIATE)
    decrease: ChangeRule = ChangeRule(timing=Timing.PERIOD_END)
    presentation: Literal["credit_and_charge", "difference"] = Field(
        default="credit_and_charge",
        description="credit_and_charge: a credit for the old quantity and a charge for the new one "
        "(Kill Bill); difference: one line for the difference (Recurly, Chargebee)",
    )


class AddonPolicy(_Frozen):
    """Rules for adding and removing add-ons."""

    add: ChangeRule = ChangeRule(timing=Timing.IMMEDIATE)
    remove: ChangeRule = ChangeRule(timing=Timing.PERIOD_END)


class OneOffPolicy(_Frozen):
    """How one-off charges and setup credits are invoiced by default."""

    invoicing: Invoicing = "pending"


class CancellationPolicy(_Frozen):
    """Default cancellation timing and what an immediate cancellation does with unused time."""

    timing: TimingInput = Timing.PERIOD_END
    immediate_credit: Literal["account_credit", "refund", "none"] = "account_credit"


class PausePolicy(_Frozen):
    """Whether pausing credits the paused, already charged days."""

    credit_paused_days: bool = True
    invoicing: Invoicing = Field(
        default="invoice_immediately",
        description="invoice_immediately: the pause credit is a credit note at once, so the customer's "
        "balance shows it while paused; pending: it rolls into the resume invoice",
    )


class PaymentTermsPolicy(_Frozen):
    """Allowed net payment terms in days."""

    allowed_days: tuple[int, ...] = (0, 30, 60)


class DunningPolicy(_Frozen):
    """Retry schedule after a failed payment and its lifecycle effects."""

    retry_after_days: tuple[int, ...] = (1, 3, 7)
    basis: Literal["since_last_failure", "since_first_failure"] = "since_last_failure"
    on_first_failure: str = "past_due"
    on_exhausted: str = "suspended"

    @field_validator("retry_after_days")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 0 for d in v):
            raise ValueError("retry delays cannot be negative")
        return v


class BillingPolicy(_Frozen):
    """The whole billing policy file."""

    plan_change: PlanChangePolicy = PlanChangePolicy()
    quantity_change: QuantityChangePolicy = QuantityChangePolicy()
    addon: AddonPolicy = AddonPolicy()
    one_off: OneOffPolicy = OneOffPolicy()
    cancellation: CancellationPolicy = CancellationPolicy()
    pause: PausePolicy = PausePolicy()
    payment_terms: PaymentTermsPolicy = PaymentTermsPolicy()
    dunning: DunningPolicy = DunningPolicy()


def load_billing_policy(path: Path | str | None = None) -> BillingPolicy:
    """Read and validate the billing policy (the packaged default when ``path`` is None)."""
    return load_yaml_model(path or DEFAULT_POLICY_PATH, BillingPolicy, PolicyError, what="billing policy")


def plan_change_rule(
    policy: BillingPolicy,
    catalog: Catalog,
    from_plan: str,
    to_plan: str,
    *,
    timing: Timing | None = None,
    invoicing: Invoicing | None = None,
) -> ChangeRule:
    """The rule for a plan change: first matching pair, else the class rule; command overrides last."""
    return rule_for(policy.plan_change, catalog, from_plan, to_plan, timing=timing, invoicing=invoicing)
