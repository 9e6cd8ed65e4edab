"""The subscription state machine's shared vocabulary and event payloads: what ``SubscriptionStateChanged.events`` holds.

Statuses and command kinds are the one vocabulary billing, entitlements and operators share.
The events are the state machine's decisions, in the past tense, each with from/to status,
effective time, actor and reason; ``type`` discriminates them. The lifecycle domain produces
exactly these models (``services.lifecycle.domain.events`` re-exports them) and billing reads
them from here, so producer and consumer cannot drift apart.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.contracts.commands import Timing

ApprovalMode = Literal["auto", "manual"]
ChangeDirection = Literal["upgrade", "downgrade", "sidegrade"]


class Status(StrEnum):
    """Where a subscription is in its life. One status, shared by billing, entitlements and people."""

    PENDING_APPROVAL = "pending_approval"
    TRIAL = "trial"
    ACTIVE = "active"
    PAUSED = "paused"
    PAST_DUE = "past_due"
    SUSPENDED = "suspended"
    NON_RENEWING = "non_renewing"  # cancellation scheduled at the end of the current period
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    TERMINATED = "terminated"


class CommandKind(StrEnum):
    """Every command that changes a subscription (the lifecycle table's columns)."""

    CREATE = "create"
    APPROVE = "approve"
    REJECT = "reject"
    START_TRIAL = "start_trial"
    CONVERT_TRIAL = "convert_trial"
    CHANGE_PLAN = "change_plan"
    CHANGE_QUANTITY = "change_quantity"
    ADD_ADDON = "add_addon"
    REMOVE_ADDON = "remove_addon"
    PAUSE = "pause"
    RESUME = "resume"
    MARK_PAST_DUE = "mark_past_due"
    PAYMENT_RECOVERED = "payment_recovered"
    SUSPEND = "suspend"
    REACTIVATE = "reactivate"
    CANCEL = "cancel"
    UNDO_SCHEDULED_CHANGE = "undo_scheduled_change"
    RENEW = "renew"
    EXPIRE = "expire"
    TERMINATE = "terminate"


class DomainEvent(BaseModel):
    """Fields every lifecycle event has."""

    model_config = ConfigDict(frozen=True)

    type: str
    subscription_id: str
    command: CommandKind
    idempotency_key: str
    from_status: Status | None  # None for the creation
    to_status: Status
    effective_at: AwareDatetime
    actor: str
    reason: str | None = None


class SubscriptionCreated(DomainEvent):
    """A subscription was created (in ``pending_approval``, ``trial`` or ``active``)."""

    type: Literal["SubscriptionCreated"] = "SubscriptionCreated"
    plan_id: str
    tier: int
    quantity: int
    billing_interval: str
    approval_mode: ApprovalMode
    trial_days: int


class SubscriptionApproved(DomainEvent):
    """A pending subscription was approved."""

    type: Literal["SubscriptionApproved"] = "SubscriptionApproved"


class SubscriptionRejected(DomainEvent):
    """A pending subscription was refused."""

    type: Literal["SubscriptionRejected"] = "SubscriptionRejected"
    grace_period_ends_at: AwareDatetime


class SubscriptionActivated(DomainEvent):
    """The first paid period started (creation, approval or trial conversion)."""

    type: Literal["SubscriptionActivated"] = "SubscriptionActivated"
    period_start: date
    period_end: date
    billed_through: date | None = None  # a backdated start: every period up to this day is billed now


class TrialStarted(DomainEvent):
    """A free trial started."""

    type: Literal["TrialStarted"] = "TrialStarted"
    trial_ends_at: AwareDatetime


class TrialConverted(DomainEvent):
    """The trial ended and the first paid period started."""

    type: Literal["TrialConverted"] = "TrialConverted"
    period_start: date
    period_end: date


class PlanChanged(DomainEvent):
    """The base plan changed (and maybe the quantity). ``direction`` tells billing how to prorate.

    ``timing=period_end``: a scheduled change applied at a period boundary (the renewal or resume
    it comes with carries the new terms); ``immediate``: prorate from the effective date.
    """

    type: Literal["PlanChanged"] = "PlanChanged"
    from_plan_id: str
    from_tier: int
    to_plan_id: str
    to_tier: int
    direction: ChangeDirection
    from_quantity: int
    to_quantity: int
    timing: Timing
    invoice: Literal["now", "next"] | None = None  # the command's choice; None: billing policy
    billing_interval: str | None = None  # the new interval when it changes; the cycle restarts
    period_start: date | None
    period_end: date | None


class PlanChangeScheduled(DomainEvent):
    """A plan change (or, with ``from_plan_id == to_plan_id``, a seat change) will apply at period end."""

    type: Literal["PlanChangeScheduled"] = "PlanChangeScheduled"
    from_plan_id: str
    from_tier: int
    to_plan_id: str
    to_tier: int
    direction: ChangeDirection
    from_quantity: int
    to_quantity: int | None
    effective_on: date


class ScheduledPlanChangeDropped(DomainEvent):
    """A scheduled plan or seat change was withdrawn (undo, or superseded by an immediate change)."""

    type: Literal["ScheduledPlanChangeDropped"] = "ScheduledPlanChangeDropped"
    plan_id: str
    quantity: int | None
    effective_on: date


class QuantityChanged(DomainEvent):
    """The base plan's quantity changed: now (prorated), or at a period boundary (``period_end``)."""

    type: Literal["QuantityChanged"] = "QuantityChanged"
    plan_id: str
    from_quantity: int
    to_quantity: int
    timing: Timing = Timing.IMMEDIATE
    invoice: Literal["now", "next"] | None = None  # the command's choice; None: billing policy


class AddOnAdded(DomainEvent):
    """An add-on line was added."""

    type: Literal["AddOnAdded"] = "AddOnAdded"
    addon_plan_id: str
    quantity: int


class AddOnRemoved(DomainEvent):
    """An add-on line was removed."""

    type: Literal["AddOnRemoved"] = "AddOnRemoved"
    addon_plan_id: str
    quantity: int


class SubscriptionPaused(DomainEvent):
    """Billing was paused, optionally until ``resume_on``."""

    type: Literal["SubscriptionPaused"] = "SubscriptionPaused"
    resume_on: date | None


class SubscriptionResumed(DomainEvent):
    """A paused subscription resumed on its cycle; the current period is the one containing the resume day."""

    type: Literal["SubscriptionResumed"] = "SubscriptionResumed"
    paused_at: AwareDatetime
    period_start: date
    period_end: date


class SubscriptionPastDue(DomainEvent):
    """A payment failed."""

    type: Literal["SubscriptionPastDue"] = "SubscriptionPastDue"


class PaymentRecovered(DomainEvent):
    """The outstanding payment was collected."""

    type: Literal["PaymentRecovered"] = "PaymentRecovered"


class SubscriptionSuspended(DomainEvent):
    """Suspended: existing instances stay, no new ones."""

    type: Literal["SubscriptionSuspended"] = "SubscriptionSuspended"


class SubscriptionReactivated(DomainEvent):
    """A suspension was lifted, or an ended subscription was restored (with a new period)."""

    type: Literal["SubscriptionReactivated"] = "SubscriptionReactivated"
    period_start: date
    period_end: date
    new_billing_anchor: bool  # True when restored after an end: the renewal day moved


class SubscriptionCancelled(DomainEvent):
    """The subscription ended by cancellation (now, or at the end of the period)."""

    type: Literal["SubscriptionCancelled"] = "SubscriptionCancelled"
    timing: Timing
    ended_at: AwareDatetime
    grace_period_ends_at: AwareDatetime


class CancellationScheduled(DomainEvent):
    """The subscription will not renew: it ends at ``effective_on``."""

    type: Literal["CancellationScheduled"] = "CancellationScheduled"
    effective_on: date


class CancellationRevoked(DomainEvent):
    """A scheduled cancellation was withdrawn: the subscription renews again."""

    type: Literal["CancellationRevoked"] = "CancellationRevoked"


class SubscriptionRenewed(DomainEvent):
    """A new period started; the plan and quantity are those billed for it."""

    type: Literal["SubscriptionRenewed"] = "SubscriptionRenewed"
    period_start: date
    period_end: date
    plan_id: str
    quantity: int


class SubscriptionExpired(DomainEvent):
    """The subscription lapsed (trial not converted, approval never given, dunning failed)."""

    type: Literal["SubscriptionExpired"] = "SubscriptionExpired"
    ended_at: AwareDatetime
    grace_period_ends_at: AwareDatetime


class SubscriptionTerminated(DomainEvent):
    """The subscription was terminated for good; data is deleted after the grace period."""

    type: Literal["SubscriptionTerminated"] = "SubscriptionTerminated"
    ended_at: AwareDatetime
    grace_period_ends_at: AwareDatetime


SubscriptionEvent = Annotated[
    SubscriptionCreated
    | SubscriptionApproved
    | SubscriptionRejected
    | SubscriptionActivated
    | TrialStarted
    | TrialConverted
    | PlanChanged
    | PlanChangeScheduled
    | ScheduledPlanChangeDropped
    | QuantityChanged
    | AddOnAdded
    | AddOnRemoved
    | SubscriptionPaused
    | SubscriptionResumed
    | SubscriptionPastDue
    | PaymentRecovered
    | SubscriptionSuspended
    | SubscriptionReactivated
    | SubscriptionCancelled
    | CancellationScheduled
    | CancellationRevoked
    | SubscriptionRenewed
    | SubscriptionExpired
    | SubscriptionTerminated,
    Field(discriminator="type"),
]
"""One lifecycle event as it travels in ``SubscriptionStateChanged.events``."""
