"""Timers: which ones a subscription should have, and what each one sends when it fires.

A subscription has at most one timer of each kind, so a timer is identified by
``(subscription_id, kind)``: *set* means insert-or-replace, *cancel* means drop the pending one.
The timers a state needs are a pure function of that state (:func:`timers_for`); a decision's timer
changes are the difference between the old and the new state's timers (:func:`timer_changes`),
which keeps timers and state from drifting apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from services.lifecycle.domain.model import (
    RENEWING_STATUSES,
    CommandKind,
    LifecycleConfig,
    Status,
    SubscriptionState,
    start_of_day,
)


class TimerKind(StrEnum):
    """Kinds of timer the lifecycle sets."""

    RENEWAL_DUE = "renewal_due"
    TRIAL_END = "trial_end"
    PAUSE_RESUME = "pause_resume"
    SCHEDULED_CANCELLATION = "scheduled_cancellation"
    SCHEDULED_PLAN_CHANGE = "scheduled_plan_change"
    GRACE_PERIOD_END = "grace_period_end"
    UPCOMING_CHARGE_NOTICE = "upcoming_charge_notice"


# The command the scheduler sends to the lifecycle when a timer fires (with effective_at=due_at).
# The period-end timer is exactly one of renewal_due / scheduled_plan_change / scheduled_cancellation:
# all three send ``renew``, and the kind says what the boundary will do. ``None``: the timer is not
# for the lifecycle (the upcoming-charge notice goes to the customer, grace_period_end triggers the
# deletion of customer data).
TIMER_COMMANDS: Mapping[TimerKind, CommandKind | None] = {
    TimerKind.RENEWAL_DUE: CommandKind.RENEW,
    TimerKind.SCHEDULED_PLAN_CHANGE: CommandKind.RENEW,
    TimerKind.SCHEDULED_CANCELLATION: CommandKind.RENEW,
    TimerKind.TRIAL_END: CommandKind.CONVERT_TRIAL,
    TimerKind.PAUSE_RESUME: CommandKind.RESUME,
    TimerKind.GRACE_PERIOD_END: None,
    TimerKind.UPCOMING_CHARGE_NOTICE: None,
}


class Timer(BaseModel):
    """A timer to set (insert or replace the pending timer of this kind)."""

    model_config = ConfigDict(frozen=True)

    subscription_id: str
    kind: TimerKind
    due_at: AwareDatetime
    command: CommandKind | None  # what to send to the lifecycle when it fires (see TIMER_COMMANDS)

    @property
    def idempotency_key(self) -> str:
        """A key that is the same every time this exact timer fires (so a double fire is one command)."""
        return f"timer:{self.subscription_id}:{self.kind}:{self.due_at.isoformat()}"


def timers_for(state: SubscriptionState | None, config: LifecycleConfig) -> dict[TimerKind, datetime]:
    """The pending timers (kind -> due time) a subscription in ``state`` must have."""
    if state is None:
        return {}
    out: dict[TimerKind, datetime] = {}
    status = state.status
    if status is Status.TRIAL and state.trial_ends_at is not None:
        out[TimerKind.TRIAL_END] = state.trial_ends_at
    elif status in RENEWING_STATUSES and state.current_period_end is not None:
        end = start_of_day(state.current_period_end)
        kind = TimerKind.SCHEDULED_PLAN_CHANGE if state.scheduled_change else TimerKind.RENEWAL_DUE
        out[kind] = end
        notice = end - timedelta(days=config.upcoming_charge_notice_days)
        # Only when the notice falls inside the period: a notice days before a weekly renewal
        # that is as long as the period would land on the period start.
        if state.current_period_start is not None and notice > start_of_day(state.current_period_start):
            out[TimerKind.UPCOMING_CHARGE_NOTICE] = notice
    elif status is Status.NON_RENEWING and state.current_period_end is not None:
        out[TimerKind.SCHEDULED_CANCELLATION] = start_of_day(state.current_period_end)
    elif status is Status.PAUSED and state.resume_on is not None:
        out[TimerKind.PAUSE_RESUME] = start_of_day(state.resume_on)
    elif state.is_ended and state.grace_period_ends_at is not None:
        out[TimerKind.GRACE_PERIOD_END] = state.grace_period_ends_at
    return out


def timer_changes(
    before: SubscriptionState | None, after: SubscriptionState, config: LifecycleConfig
) -> tuple[tuple[Timer, ...], tuple[TimerKind, ...]]:
    """Timers to set and timer kinds to cancel to go from ``before``'s timers to ``after``'s."""
    old, new = timers_for(before, config), timers_for(after, config)
    to_set = tuple(
        Timer(subscription_id=after.subscription_id, kind=kind, due_at=due, command=TIMER_COMMANDS[kind])
        for kind, due in sorted(new.items())
        if old.get(kind) != due
    )
    to_cancel = tuple(sorted(kind for kind in old if kind not in new))
    return to_set, to_cancel
