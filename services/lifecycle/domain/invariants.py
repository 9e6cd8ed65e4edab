"""Invariants every subscription state satisfies; the worker may check them before it persists a state."""

from __future__ import annotations

from services.lifecycle.domain.model import (
    ENDED_STATUSES,
    PERIOD_STATUSES,
    RENEWING_STATUSES,
    Status,
    SubscriptionState,
)


def invariant_violations(state: SubscriptionState) -> list[str]:
    """Every invariant ``state`` breaks, as sentences (empty: the state is consistent)."""
    problems: list[str] = []
    status = state.status

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    check(isinstance(status, Status), f"unknown status {status!r}")
    check((state.trial_ends_at is not None) == (status is Status.TRIAL), "trial_ends_at is set only in trial")
    check(status is not Status.TRIAL or state.had_trial, "a trial is recorded in had_trial")
    check((state.paused_at is not None) == (status is Status.PAUSED), "paused_at is set only while paused")
    check(state.resume_on is None or status is Status.PAUSED, "resume_on is set only while paused")
    ended = status in ENDED_STATUSES
    check((state.ended_at is not None) == ended, "ended_at is set only in an ended status")
    check((state.grace_period_ends_at is not None) == ended, "grace_period_ends_at is set only when ended")
    if state.ended_at is not None and state.grace_period_ends_at is not None:
        check(state.grace_period_ends_at >= state.ended_at, "the grace period ends after the end")
    if not ended:
        check(
            (state.approved_at is None) == (status is Status.PENDING_APPROVAL),
            "approved_at is set exactly when the subscription left pending_approval",
        )
    if status in PERIOD_STATUSES:
        check(
            state.billing_anchor is not None
            and state.current_period_start is not None
            and state.current_period_end is not None,
            f"{status.value} has a billing anchor and a current period",
        )
    if status in (Status.PENDING_APPROVAL, Status.TRIAL):
        check(
            state.billing_anchor is None
            and state.current_period_start is None
            and state.current_period_end is None,
            f"{status.value} has no paid period",
        )
    if state.current_period_start is not None or state.current_period_end is not None:
        check(
            state.current_period_start is not None
            and state.current_period_end is not None
            and state.current_period_start < state.current_period_end,
            "current_period_start < current_period_end",
        )
        check(
            state.billing_anchor is not None
            and state.current_period_start is not None
            and state.billing_anchor <= state.current_period_start,
            "the billing anchor is not after the current period start",
        )
    if state.scheduled_change is not None:
        check(
            status in PERIOD_STATUSES,
            "a plan change is scheduled only while a paid period runs (or is paused)",
        )
        if status in RENEWING_STATUSES | {Status.NON_RENEWING}:
            check(
                state.scheduled_change.effective_on == state.current_period_end,
                "a scheduled plan change applies at the current period end",
            )
        check(
            state.scheduled_change.plan.plan_id != state.plan.plan_id
            or state.scheduled_change.quantity is not None,
            "a scheduled change goes to another plan or sets the quantity",
        )
    check(state.plan.kind == "base", "the subscription's plan is a base plan")
    check(state.plan.allows_quantity(state.quantity), "the quantity is within the plan's bounds")
    ids = [a.plan.plan_id for a in state.addons]
    check(len(ids) == len(set(ids)), "each add-on appears once")
    for a in state.addons:
        check(a.plan.kind == "addon", f"add-on {a.plan.plan_id} is an add-on plan")
        check(a.plan.allows_quantity(a.quantity), f"add-on {a.plan.plan_id} quantity within bounds")
    check(state.created_at <= state.updated_at, "created_at <= updated_at")
    return problems
