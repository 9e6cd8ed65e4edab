"""Domain events: what happened, in the past tense, each with from/to status, effective time, actor, reason.

A decision carries one or more events (e.g. a renewal that applies a scheduled plan change carries
``PlanChanged`` then ``SubscriptionRenewed``). The worker publishes them (or folds them into the
``SubscriptionStateChanged`` contract); ``type`` discriminates the JSON form.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from services.lifecycle.domain.model import (
    ApprovalMode,
    CancelTiming,
    ChangeDirection,
    CommandKind,
    PlanChangeTiming,
    ScheduledPlanChange,
    Status,
)


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
    """The base plan changed (and maybe the quantity). ``direction`` tells billing how to prorate."""

    type: Literal["PlanChanged"] = "PlanChanged"
    from_plan_id: str
    from_tier: int
    to_plan_id: str
    to_tier: int
    direction: ChangeDirection
    from_quantity: int
    to_quantity: int
    timing: PlanChangeTiming
    period_start: date | None
    period_end: date | None


class PlanChangeScheduled(DomainEvent):
    """A plan change will apply at the end of the current period."""

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
    """A scheduled plan change was withdrawn (undo, or superseded by an immediate change)."""

    type: Literal["ScheduledPlanChangeDropped"] = "ScheduledPlanChangeDropped"
    dropped: ScheduledPlanChange


class QuantityChanged(DomainEvent):
    """The base plan's quantity changed."""

    type: Literal["QuantityChanged"] = "QuantityChanged"
    plan_id: str
    from_quantity: int
    to_quantity: int


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
    """The subscription ended by cancellation (now, or at the end of the term)."""

    type: Literal["SubscriptionCancelled"] = "SubscriptionCancelled"
    timing: CancelTiming
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
