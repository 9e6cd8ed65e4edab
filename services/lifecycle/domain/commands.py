"""Commands to the lifecycle, one model per kind, discriminated by ``kind``.

Every command carries an ``idempotency_key``; deduplication is the worker's job (it records the
key with the outcome in the database), the domain only passes the key through to the audit entry
and the events. ``effective_at`` is when the change takes effect (a channel's event time, a timer's
due time); when it is ``None`` the ``now`` given to ``decide`` is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from services.lifecycle.domain.model import (
    ApprovalMode,
    CommandKind,
    PlanRef,
)
from shared.catalog import BillingInterval
from shared.contracts.commands import Timing


class CommandBase(BaseModel):
    """Fields every command has."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscription_id: str
    idempotency_key: str
    actor: str = "system"
    reason: str | None = None
    effective_at: AwareDatetime | None = None

    @property
    def command_kind(self) -> CommandKind:
        """The command's kind as a :class:`CommandKind`."""
        return CommandKind(getattr(self, "kind"))  # noqa: B009 - every concrete command defines kind


class Create(CommandBase):
    """Create a subscription. ``approval`` is resolved by the worker from the approval policy."""

    kind: Literal["create"] = "create"
    channel: str
    account_id: str | None = None
    customer_id: str | None = None
    plan: PlanRef
    quantity: int = 1
    billing_interval: BillingInterval = "P1M"
    approval: ApprovalMode = "auto"
    trial_days: int | None = Field(default=None, ge=0)  # None: the plan's trial_days; 0: no trial
    cycle_day: int | None = Field(default=None, ge=1, le=31)  # the account's billing day; None: start date
    calendar_cycle: bool = False  # periods on the 1st of the month / quarter / year

    @property
    def effective_trial_days(self) -> int:
        """Trial length this creation asks for."""
        return self.plan.trial_days if self.trial_days is None else self.trial_days


class Approve(CommandBase):
    """Approve a subscription waiting for manual approval."""

    kind: Literal["approve"] = "approve"


class Reject(CommandBase):
    """Refuse a subscription waiting for manual approval."""

    kind: Literal["reject"] = "reject"


class StartTrial(CommandBase):
    """Grant a free trial to an active subscription that never had one (billing stops until it ends)."""

    kind: Literal["start_trial"] = "start_trial"
    trial_days: int


class ConvertTrial(CommandBase):
    """End the trial and start the first paid period (the ``trial_end`` timer sends this)."""

    kind: Literal["convert_trial"] = "convert_trial"


class ChangePlan(CommandBase):
    """Move to another base plan, now or at the end of the current period."""

    kind: Literal["change_plan"] = "change_plan"
    plan: PlanRef
    timing: Timing = Timing.IMMEDIATE
    quantity: int | None = None  # None: keep the current quantity
    invoice: Literal["now", "next"] | None = None  # passed on to billing; None: its policy
    billing_interval: BillingInterval | None = None  # a new interval; the cycle restarts
    # A new interval keeps the billing day (policy plan_change.interval_change_anchor: keep)
    # instead of restarting the cycle on the change date.
    keep_anchor: bool = False


class ChangeQuantity(CommandBase):
    """Change the quantity (seats) of the base plan, now or at the end of the current period."""

    kind: Literal["change_quantity"] = "change_quantity"
    quantity: int
    timing: Timing = Timing.IMMEDIATE
    invoice: Literal["now", "next"] | None = None  # passed on to billing; None: its policy


class AddAddon(CommandBase):
    """Add an add-on line."""

    kind: Literal["add_addon"] = "add_addon"
    addon: PlanRef
    quantity: int = 1


class RemoveAddon(CommandBase):
    """Remove an add-on line."""

    kind: Literal["remove_addon"] = "remove_addon"
    addon_plan_id: str


class Pause(CommandBase):
    """Pause billing, optionally until ``resume_on`` (the ``pause_resume`` timer then resumes it)."""

    kind: Literal["pause"] = "pause"
    resume_on: date | None = None


class Resume(CommandBase):
    """Resume a paused subscription on its billing cycle."""

    kind: Literal["resume"] = "resume"


class MarkPastDue(CommandBase):
    """A payment failed (sent by billing)."""

    kind: Literal["mark_past_due"] = "mark_past_due"


class MarkPaymentRecovered(CommandBase):
    """The outstanding payment was collected (sent by billing)."""

    kind: Literal["payment_recovered"] = "payment_recovered"


class Suspend(CommandBase):
    """Suspend: existing instances stay, no new ones can be created."""

    kind: Literal["suspend"] = "suspend"


class Reactivate(CommandBase):
    """Lift a suspension, or restore a cancelled/expired subscription within its grace period."""

    kind: Literal["reactivate"] = "reactivate"


class Cancel(CommandBase):
    """Cancel now or at the end of the current term."""

    kind: Literal["cancel"] = "cancel"
    timing: Timing = Timing.PERIOD_END


class UndoScheduledChange(CommandBase):
    """Withdraw a scheduled cancellation (uncancel) or drop a scheduled plan change."""

    kind: Literal["undo_scheduled_change"] = "undo_scheduled_change"


class Renew(CommandBase):
    """Period boundary reached (sent by the ``renewal_due`` / scheduled timers)."""

    kind: Literal["renew"] = "renew"


class Expire(CommandBase):
    """End a trial that did not convert, an approval that never came, or dunning that failed."""

    kind: Literal["expire"] = "expire"


class Terminate(CommandBase):
    """End the subscription for good; customer data is kept for the grace period."""

    kind: Literal["terminate"] = "terminate"
    grace_period_days: int | None = Field(default=None, ge=0)  # None: the configured default


Command = Annotated[
    Create
    | Approve
    | Reject
    | StartTrial
    | ConvertTrial
    | ChangePlan
    | ChangeQuantity
    | AddAddon
    | RemoveAddon
    | Pause
    | Resume
    | MarkPastDue
    | MarkPaymentRecovered
    | Suspend
    | Reactivate
    | Cancel
    | UndoScheduledChange
    | Renew
    | Expire
    | Terminate,
    Field(discriminator="kind"),
]

COMMAND_TYPES: Mapping[CommandKind, type[CommandBase]] = {
    CommandKind.CREATE: Create,
    CommandKind.APPROVE: Approve,
    CommandKind.REJECT: Reject,
    CommandKind.START_TRIAL: StartTrial,
    CommandKind.CONVERT_TRIAL: ConvertTrial,
    CommandKind.CHANGE_PLAN: ChangePlan,
    CommandKind.CHANGE_QUANTITY: ChangeQuantity,
    CommandKind.ADD_ADDON: AddAddon,
    CommandKind.REMOVE_ADDON: RemoveAddon,
    CommandKind.PAUSE: Pause,
    CommandKind.RESUME: Resume,
    CommandKind.MARK_PAST_DUE: MarkPastDue,
    CommandKind.PAYMENT_RECOVERED: MarkPaymentRecovered,
    CommandKind.SUSPEND: Suspend,
    CommandKind.REACTIVATE: Reactivate,
    CommandKind.CANCEL: Cancel,
    CommandKind.UNDO_SCHEDULED_CHANGE: UndoScheduledChange,
    CommandKind.RENEW: Renew,
    CommandKind.EXPIRE: Expire,
    CommandKind.TERMINATE: Terminate,
}

_COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


def parse_command(data: Mapping[str, Any]) -> Command:
    """Validate a command from its JSON form (``kind`` selects the model); raises ``ValidationError``."""
    return _COMMAND_ADAPTER.validate_python(data)
