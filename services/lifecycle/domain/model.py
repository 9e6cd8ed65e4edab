"""Value types of the subscription lifecycle: statuses, command kinds, reason codes, plans and state.

Everything here is immutable (frozen pydantic models) and free of I/O: the subscription state is
a value that :func:`services.lifecycle.domain.decision.decide` maps to a new value. The worker
stores it as JSON (``model_dump(mode="json")``) and reads it back with ``model_validate``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.catalog import BillingInterval, Plan

# Statuses and command kinds are the shared contract's vocabulary, one for all services.
from shared.contracts.subscription import ApprovalMode as ApprovalMode
from shared.contracts.subscription import ChangeDirection as ChangeDirection
from shared.contracts.subscription import CommandKind as CommandKind
from shared.contracts.subscription import Status as Status

# Terminal ("ended") states: entitlements are off and a grace period runs before customer data is
# deleted. Only the transitions the table lists leave them (reactivate within the grace period,
# terminate to make the end final); TERMINATED accepts nothing at all.
ENDED_STATUSES: frozenset[Status] = frozenset({Status.CANCELLED, Status.EXPIRED, Status.TERMINATED})
FINAL_STATUSES: frozenset[Status] = frozenset({Status.TERMINATED})
# A paid period runs and renews in these states (billing goes on while past due or suspended).
RENEWING_STATUSES: frozenset[Status] = frozenset({Status.ACTIVE, Status.PAST_DUE, Status.SUSPENDED})
# These have a current paid period (paused keeps the one it was paused in, for "resume on the cycle").
PERIOD_STATUSES: frozenset[Status] = RENEWING_STATUSES | {Status.NON_RENEWING, Status.PAUSED}
# Statuses in which the customer may create new instances (suspension keeps existing ones only).
INSTANCE_CREATION_STATUSES: frozenset[Status] = frozenset(
    {Status.TRIAL, Status.ACTIVE, Status.PAST_DUE, Status.NON_RENEWING}
)


class Reason(StrEnum):
    """Machine-readable reason codes of a :class:`Rejection`."""

    # from the transition table (depend on the status only)
    SUBSCRIPTION_NOT_FOUND = "SUBSCRIPTION_NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    ALREADY_IN_STATE = "ALREADY_IN_STATE"
    ALREADY_APPROVED = "ALREADY_APPROVED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    ENDED = "ENDED"
    NOT_ALLOWED = "NOT_ALLOWED"
    NOT_IN_TRIAL = "NOT_IN_TRIAL"
    NOT_PAUSED = "NOT_PAUSED"
    NOTHING_SCHEDULED = "NOTHING_SCHEDULED"
    PAYMENT_OUTSTANDING = "PAYMENT_OUTSTANDING"
    INVALID_TIMING = "INVALID_TIMING"
    # from guards (depend on the command's values, the time or the rest of the state)
    NOT_DUE = "NOT_DUE"
    TOO_LATE = "TOO_LATE"
    NO_CHANGE = "NO_CHANGE"
    INVALID_PLAN = "INVALID_PLAN"
    QUANTITY_OUT_OF_RANGE = "QUANTITY_OUT_OF_RANGE"
    ADDON_ALREADY_PRESENT = "ADDON_ALREADY_PRESENT"
    ADDON_NOT_FOUND = "ADDON_NOT_FOUND"
    INVALID_RESUME_DATE = "INVALID_RESUME_DATE"
    INVALID_TRIAL = "INVALID_TRIAL"
    TRIAL_ALREADY_USED = "TRIAL_ALREADY_USED"
    SCHEDULED_CHANGE_PENDING = "SCHEDULED_CHANGE_PENDING"
    NEVER_APPROVED = "NEVER_APPROVED"
    GRACE_PERIOD_OVER = "GRACE_PERIOD_OVER"


class PlanRef(BaseModel):
    """What the lifecycle needs to know about a catalog plan (filled in by the worker from the catalog)."""

    model_config = ConfigDict(frozen=True)

    plan_id: str
    tier: int = 0
    kind: Literal["base", "addon"] = "base"
    trial_days: int = Field(default=0, ge=0)
    min_quantity: int = Field(default=1, ge=1)
    max_quantity: int | None = None

    def allows_quantity(self, quantity: int) -> bool:
        """Whether ``quantity`` is within the plan's bounds."""
        return quantity >= self.min_quantity and (self.max_quantity is None or quantity <= self.max_quantity)

    def direction_to(self, other: PlanRef) -> ChangeDirection:
        """Upgrade, downgrade or sidegrade from this plan to ``other``, by tier."""
        if other.tier > self.tier:
            return "upgrade"
        if other.tier < self.tier:
            return "downgrade"
        return "sidegrade"


def plan_ref(plan: Plan) -> PlanRef:
    """The :class:`PlanRef` of a catalog plan."""
    return PlanRef(
        plan_id=plan.id,
        tier=plan.tier,
        kind=plan.kind,
        trial_days=plan.trial_days,
        min_quantity=plan.quantity.min,
        max_quantity=plan.quantity.max,
    )


class AddOn(BaseModel):
    """An add-on line of a subscription."""

    model_config = ConfigDict(frozen=True)

    plan: PlanRef
    quantity: int


class ScheduledPlanChange(BaseModel):
    """A plan or seat change waiting for a period boundary (``timing=period_end``).

    A seat change keeps the current plan and sets ``quantity``."""

    model_config = ConfigDict(frozen=True)

    plan: PlanRef
    quantity: int | None = None  # None: keep the quantity the subscription has when the change applies
    billing_interval: BillingInterval | None = None  # a new interval; None: keep it
    keep_anchor: bool = False  # a new interval keeps the billing day where the boundary allows
    effective_on: date  # the period boundary it applies at
    requested_at: AwareDatetime
    actor: str
    reason: str | None = None


class SubscriptionState(BaseModel):
    """The whole lifecycle state of one subscription. Periods are half-open ``[start, end)`` dates."""

    model_config = ConfigDict(frozen=True)

    subscription_id: str
    channel: str
    account_id: str | None = None
    customer_id: str | None = None
    status: Status
    plan: PlanRef
    quantity: int
    addons: tuple[AddOn, ...] = ()
    billing_interval: BillingInterval = "P1M"
    approval_mode: ApprovalMode = "auto"
    approved_at: AwareDatetime | None = None
    # The billing anchor fixes the renewal day (clamped at month ends); set when the first paid
    # period starts, reset only by a reactivation after the subscription ended.
    billing_anchor: date | None = None
    anchor_day: int | None = None  # day boundaries return to when the anchor is a clamped date
    cycle_day: int | None = None  # the account's billing day (Kill Bill's BCD); None: the start date
    calendar_cycle: bool = False  # periods start on the 1st of the month / quarter / year
    current_period_start: date | None = None
    current_period_end: date | None = None
    requested_trial_days: int = 0  # kept while pending approval: approve starts the trial
    had_trial: bool = False  # one trial per subscription
    trial_ends_at: AwareDatetime | None = None
    paused_at: AwareDatetime | None = None
    resume_on: date | None = None
    scheduled_change: ScheduledPlanChange | None = None
    ended_at: AwareDatetime | None = None
    grace_period_ends_at: AwareDatetime | None = None  # customer data is deleted after this
    created_at: AwareDatetime
    updated_at: AwareDatetime

    @property
    def is_ended(self) -> bool:
        """Whether the subscription is in a terminal state."""
        return self.status in ENDED_STATUSES

    @property
    def can_create_instances(self) -> bool:
        """Whether the customer may create new instances (existing ones stay in every non-ended state)."""
        return self.status in INSTANCE_CREATION_STATUSES

    def addon(self, plan_id: str) -> AddOn | None:
        """The add-on line for ``plan_id``, if any."""
        return next((a for a in self.addons if a.plan.plan_id == plan_id), None)


class LifecycleConfig(BaseModel):
    """Knobs of the lifecycle rules."""

    model_config = ConfigDict(frozen=True)

    grace_period_days: int = Field(default=30, ge=0)
    upcoming_charge_notice_days: int = Field(default=7, ge=0)


DEFAULT_CONFIG = LifecycleConfig()


def start_of_day(day: date) -> datetime:
    """Midnight UTC at the start of ``day``: when date-based timers (renewals, resumes) fall due."""
    return datetime.combine(day, time(0), tzinfo=UTC)
