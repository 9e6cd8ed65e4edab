"""Commands to the lifecycle (``subscriptions.commands``), one model per command, and the timing vocabulary.

Every sender is ours (intake, billing's dunning, the lifecycle's own timers, ``som`` operator
commands, ``som simulate``), so every model forbids unknown fields: a typo fails validation at
the sender, not silently at the receiver. ``command`` discriminates the union :data:`CommandParams`;
:class:`shared.contracts.events.SubscriptionCommand` carries one of them in ``params``.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter

from shared.money import DecimalString


class Timing(StrEnum):
    """When a change takes effect: now, or at the end of the current (paid) period."""

    IMMEDIATE = "immediate"
    PERIOD_END = "period_end"


# Older inputs (scenario files, billing policy files, CLI flags) said ``end_of_term``.
LEGACY_TIMING_ALIASES: dict[str, Timing] = {"end_of_term": Timing.PERIOD_END}


def parse_timing(value: Any) -> Any:
    """``end_of_term`` -> ``period_end``; anything else is left to the enum's validation."""
    if isinstance(value, str):
        key = value.strip().lower()
        return LEGACY_TIMING_ALIASES.get(key, key)
    return value


TimingInput = Annotated[Timing, BeforeValidator(parse_timing)]
"""A :class:`Timing` read from a person's input file or flag: accepts the old ``end_of_term``."""


UserRole = Literal["owner", "admin", "editor", "reader"]


class SubscriptionUser(BaseModel):
    """A person a channel names for a subscription, with the role they get (docs/intake.md, "Users")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str = Field(description="lower case")
    role: UserRole
    source: str | None = Field(
        default=None, description="what the channel calls them: purchaser, beneficiary, root_user, customer"
    )


class Customer(BaseModel):
    """The buyer, with the internal customer id intake resolved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str
    email: str | None = None
    name: str | None = None
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2, for tax")
    region: str | None = Field(default=None, description="availability region / tax region")
    account_id: str | None = None
    tax_exempt: bool = False


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Invoice = Literal["now", "next"]
"""When a change's proration is invoiced: at once, or rolled into the next invoice."""


class CreateParams(_Params):
    """Create a subscription (intake). Commercial terms the lifecycle keeps for billing travel here."""

    command: Literal["create"] = "create"
    plan_id: str
    quantity: int | None = Field(default=None, ge=1, description="None: the plan's minimum")
    billing_interval: str | None = Field(default=None, description="ISO 8601 duration; None: P1M")
    currency: str | None = Field(default=None, description="ISO 4217; None: USD")
    unit_amount: DecimalString | None = Field(default=None, description="price the channel charged, if any")
    customer: Customer | None = None
    channel_subscription_id: str | None = None
    trial: bool = Field(default=False, description="start with the plan's trial")
    approval: Literal["auto", "manual"] | None = Field(
        default=None, description="None: the lifecycle's approval policy decides"
    )
    clock: str | None = Field(default=None, description="test clock the subscription lives on; None: system")
    test: bool = False
    users: list[SubscriptionUser] | None = Field(
        default=None, description="the people the channel names, with their roles (None: none named)"
    )
    cycle_day: int | None = Field(
        default=None,
        ge=1,
        le=31,
        description="the account's billing cycle day (month-based intervals): periods start on it, "
        "clamped to month ends, after a prorated first stub; None: the start date",
    )
    calendar_cycle: bool = Field(
        default=False,
        description="periods start on the 1st of the month, quarter or year (prorated first stub)",
    )


class ApproveParams(_Params):
    """Approve a subscription held for manual approval."""

    command: Literal["approve"] = "approve"


class RejectParams(_Params):
    """Refuse a subscription held for manual approval."""

    command: Literal["reject"] = "reject"


class StartTrialParams(_Params):
    """Grant a trial to an active subscription that never had one."""

    command: Literal["start_trial"] = "start_trial"
    trial_days: int = Field(ge=1)


class ConvertTrialParams(_Params):
    """End the trial and start the first paid period (the trial-end timer)."""

    command: Literal["convert_trial"] = "convert_trial"


class ChangePlanParams(_Params):
    """Move to another base plan."""

    command: Literal["change_plan"] = "change_plan"
    plan_id: str
    quantity: int | None = Field(default=None, ge=1, description="None: keep the current quantity")
    timing: Timing | None = Field(
        default=None, description="None: the plan-change rule (upgrades now, the rest at period end)"
    )
    billing_interval: str | None = Field(
        default=None,
        description="a new billing interval (P1M, P3M, P1Y): the cycle restarts on the change date "
        "(immediate) or on the period end; None: keep the interval",
    )
    invoice: Invoice | None = Field(
        default=None,
        description="now: invoice the proration at once; next: with the next invoice; None: policy",
    )


class ChangeQuantityParams(_Params):
    """Change the seats of the base plan, now or at the end of the period."""

    command: Literal["change_quantity"] = "change_quantity"
    quantity: int = Field(ge=1)
    timing: Timing = Timing.IMMEDIATE
    invoice: Invoice | None = Field(
        default=None,
        description="now: invoice the proration at once; next: with the next invoice; None: policy",
    )


class AddAddonParams(_Params):
    """Add an add-on line."""

    command: Literal["add_addon"] = "add_addon"
    addon_plan_id: str
    quantity: int = Field(default=1, ge=1)


class RemoveAddonParams(_Params):
    """Remove an add-on line."""

    command: Literal["remove_addon"] = "remove_addon"
    addon_plan_id: str


class PauseParams(_Params):
    """Pause billing, optionally until a resume date."""

    command: Literal["pause"] = "pause"
    resume_on: date | None = None


class ResumeParams(_Params):
    """Resume a paused subscription."""

    command: Literal["resume"] = "resume"


class MarkPastDueParams(_Params):
    """A payment failed (billing's dunning)."""

    command: Literal["mark_past_due"] = "mark_past_due"


class PaymentRecoveredParams(_Params):
    """The outstanding payment was collected (billing's dunning)."""

    command: Literal["payment_recovered"] = "payment_recovered"


class SuspendParams(_Params):
    """Suspend: existing instances stay, no new ones."""

    command: Literal["suspend"] = "suspend"


class ReactivateParams(_Params):
    """Lift a suspension, or restore an ended subscription within its grace period."""

    command: Literal["reactivate"] = "reactivate"


class CancelParams(_Params):
    """Cancel now or at the end of the current period."""

    command: Literal["cancel"] = "cancel"
    timing: Timing = Timing.PERIOD_END


class UndoScheduledChangeParams(_Params):
    """Withdraw a scheduled cancellation, or drop a scheduled plan or seat change."""

    command: Literal["undo_scheduled_change"] = "undo_scheduled_change"


class RenewParams(_Params):
    """The period boundary is reached (renewal timer)."""

    command: Literal["renew"] = "renew"


class ExpireParams(_Params):
    """End a trial that did not convert, an approval that never came, dunning that failed."""

    command: Literal["expire"] = "expire"


class TerminateParams(_Params):
    """End the subscription for good."""

    command: Literal["terminate"] = "terminate"
    grace_period_days: int | None = Field(default=None, ge=0, description="None: the configured default")


class UpcomingChargeNoticeParams(_Params):
    """Timer: tell the customer about the next charge (no state change)."""

    command: Literal["upcoming_charge_notice"] = "upcoming_charge_notice"


class GracePeriodEndParams(_Params):
    """Timer: the grace period after the end is over; provisioning may delete data (no state change)."""

    command: Literal["grace_period_end"] = "grace_period_end"


CommandParams = Annotated[
    CreateParams
    | ApproveParams
    | RejectParams
    | StartTrialParams
    | ConvertTrialParams
    | ChangePlanParams
    | ChangeQuantityParams
    | AddAddonParams
    | RemoveAddonParams
    | PauseParams
    | ResumeParams
    | MarkPastDueParams
    | PaymentRecoveredParams
    | SuspendParams
    | ReactivateParams
    | CancelParams
    | UndoScheduledChangeParams
    | RenewParams
    | ExpireParams
    | TerminateParams
    | UpcomingChargeNoticeParams
    | GracePeriodEndParams,
    Field(discriminator="command"),
]

# Commands that fire a notice instead of changing the subscription.
NOTICE_COMMANDS: frozenset[str] = frozenset({"upcoming_charge_notice", "grace_period_end"})

_PARAMS_ADAPTER: TypeAdapter[CommandParams] = TypeAdapter(CommandParams)


def command_params(data: dict[str, Any]) -> CommandParams:
    """Validate the parameters of a command from their JSON form (``command`` selects the model)."""
    return _PARAMS_ADAPTER.validate_python(data)


def params_for(command: str, **fields: Any) -> CommandParams:
    """The parameters model of ``command`` with ``fields`` (a typo or an unknown command raises)."""
    return command_params({"command": command, **fields})


# -- replenishment (billing-level commands on ``replenishment.commands``) ----------------------------


class RunCycleParams(_Params):
    """Timer: run the replenishment cycle due on ``due_date`` (a stale one changes nothing)."""

    command: Literal["run_cycle"] = "run_cycle"
    due_date: date


class SkipNextParams(_Params):
    """The customer skips the next delivery: not delivered, not billed."""

    command: Literal["skip_next"] = "skip_next"


class DelayNextParams(_Params):
    """The customer moves the next delivery ``days`` later."""

    command: Literal["delay_next"] = "delay_next"
    days: int = Field(ge=1, le=365)


ReplenishmentParams = Annotated[
    RunCycleParams | SkipNextParams | DelayNextParams,
    Field(discriminator="command"),
]
