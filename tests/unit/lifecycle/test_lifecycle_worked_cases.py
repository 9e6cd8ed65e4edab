"""Worked cases: whole stories through the lifecycle, driven the way the worker and scheduler will."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.lifecycle.domain import (
    TIMER_COMMANDS,
    Decision,
    LifecycleConfig,
    Reason,
    Status,
    SubscriptionState,
    Timer,
    TimerKind,
    decide,
    invariant_violations,
)
from services.lifecycle.domain import events as ev
from services.lifecycle.domain.model import start_of_day

from .builders import ENTERPRISE, PRO, PRO_EU, STARTER, STORAGE, SUB, apply, cmd, create, key, refuse, step


def timer(decision: Decision, kind: TimerKind) -> Timer:
    """The timer of ``kind`` the decision sets."""
    found = [t for t in decision.timers_to_set if t.kind is kind]
    assert len(found) == 1, f"{kind} not set by {decision.command.kind}: {decision.timers_to_set}"
    return found[0]


def fire(state: SubscriptionState, t: Timer, config: LifecycleConfig | None = None) -> Decision:
    """What the scheduler does: send the timer's command, effective at its due time."""
    command_kind = TIMER_COMMANDS[t.kind]
    assert command_kind is not None
    command = cmd(command_kind, actor="system:scheduler", effective_at=t.due_at)
    result = decide(
        state, command, now=t.due_at + timedelta(seconds=5), **({"config": config} if config else {})
    )
    assert isinstance(result, Decision), result
    return result


def event_types(decision: Decision) -> list[str]:
    return [e.type for e in decision.events]


# --- renewals on month ends ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "february"),
    [(2024, date(2024, 2, 29)), (2025, date(2025, 2, 28))],
    ids=["leap-year", "common-year"],
)
def test_monthly_created_on_jan_31_renews_on_month_ends(year: int, february: date) -> None:
    created = datetime(year, 1, 31, 14, 30, tzinfo=UTC)
    decision = apply(None, create(), created)
    state = decision.state
    assert (state.billing_anchor, state.current_period_start, state.current_period_end) == (
        date(year, 1, 31),
        date(year, 1, 31),
        february,
    )
    renewals: list[date] = []
    while True:
        due = timer(decision, TimerKind.RENEWAL_DUE)
        if due.due_at >= datetime(year + 1, 1, 31, tzinfo=UTC) + timedelta(days=1):
            break
        decision = fire(state, due)
        state = decision.state
        assert event_types(decision) == ["SubscriptionRenewed"]
        renewals.append(state.current_period_start)  # type: ignore[arg-type]
    assert renewals == [
        february,
        date(year, 3, 31),
        date(year, 4, 30),
        date(year, 5, 31),
        date(year, 6, 30),
        date(year, 7, 31),
        date(year, 8, 31),
        date(year, 9, 30),
        date(year, 10, 31),
        date(year, 11, 30),
        date(year, 12, 31),
        date(year + 1, 1, 31),
    ]
    assert len(renewals) == 12  # twelve renewals in a year, none drifted to the 28th


def test_renewal_sets_the_next_renewal_and_the_upcoming_charge_notice() -> None:
    config = LifecycleConfig(upcoming_charge_notice_days=3)
    first = decide(None, create(), now=datetime(2024, 1, 31, 9, tzinfo=UTC), config=config)
    assert isinstance(first, Decision)
    assert timer(first, TimerKind.UPCOMING_CHARGE_NOTICE).due_at == datetime(2024, 2, 26, tzinfo=UTC)
    assert timer(first, TimerKind.UPCOMING_CHARGE_NOTICE).command is None  # a notice, not a lifecycle command
    renewed = fire(first.state, timer(first, TimerKind.RENEWAL_DUE), config)
    assert timer(renewed, TimerKind.RENEWAL_DUE).due_at == datetime(2024, 3, 31, tzinfo=UTC)
    assert timer(renewed, TimerKind.UPCOMING_CHARGE_NOTICE).due_at == datetime(2024, 3, 28, tzinfo=UTC)


def test_weekly_subscription_gets_no_notice_as_long_as_the_period() -> None:
    config = LifecycleConfig(upcoming_charge_notice_days=7)
    d = decide(None, create(billing_interval="P1W"), now=datetime(2024, 3, 4, tzinfo=UTC), config=config)
    assert isinstance(d, Decision)
    assert [t.kind for t in d.timers_to_set] == [TimerKind.RENEWAL_DUE]
    assert d.state.current_period_end == date(2024, 3, 11)


def test_yearly_anchored_on_feb_29_renews_on_feb_28_and_back_on_feb_29() -> None:
    d = apply(None, create(billing_interval="P1Y"), datetime(2024, 2, 29, 8, tzinfo=UTC))
    ends = [d.state.current_period_end]
    for _ in range(4):
        d = fire(d.state, timer(d, TimerKind.RENEWAL_DUE))
        ends.append(d.state.current_period_end)
    assert ends == [
        date(2025, 2, 28),
        date(2026, 2, 28),
        date(2027, 2, 28),
        date(2028, 2, 29),
        date(2029, 2, 28),
    ]


def test_renew_before_the_period_end_is_not_due() -> None:
    state = step(None, create(), datetime(2024, 1, 31, 9, tzinfo=UTC))
    r = refuse(state, cmd("renew"), datetime(2024, 2, 28, 23, 59, tzinfo=UTC))
    assert r.code is Reason.NOT_DUE


# --- trials -------------------------------------------------------------------------------------


def test_trial_converts_at_trial_end() -> None:
    t0 = datetime(2024, 5, 10, 12, tzinfo=UTC)
    created = apply(None, create(trial_days=None, plan=PRO), t0)  # None: the plan's 14 days
    assert created.state.status is Status.TRIAL
    assert event_types(created) == ["SubscriptionCreated", "TrialStarted"]
    trial_end = timer(created, TimerKind.TRIAL_END)
    assert trial_end.due_at == t0 + timedelta(days=14) and trial_end.command == "convert_trial"
    assert created.state.current_period_end is None  # nothing billed during the trial

    converted = fire(created.state, trial_end)
    s = converted.state
    assert s.status is Status.ACTIVE and s.trial_ends_at is None
    assert (s.billing_anchor, s.current_period_start, s.current_period_end) == (
        date(2024, 5, 24),
        date(2024, 5, 24),
        date(2024, 6, 24),
    )
    assert event_types(converted) == ["TrialConverted", "SubscriptionActivated"]
    assert converted.timers_to_cancel == (TimerKind.TRIAL_END,)
    assert timer(converted, TimerKind.RENEWAL_DUE).due_at == datetime(2024, 6, 24, tzinfo=UTC)


def test_trial_that_does_not_convert_expires_with_a_grace_period() -> None:
    t0 = datetime(2024, 5, 10, 12, tzinfo=UTC)
    state = step(None, create(trial_days=7), t0)
    assert refuse(state, cmd("expire"), t0 + timedelta(days=6)).code is Reason.NOT_DUE
    expired = apply(state, cmd("expire"), t0 + timedelta(days=7))
    assert expired.state.status is Status.EXPIRED
    assert timer(expired, TimerKind.GRACE_PERIOD_END).due_at == t0 + timedelta(days=37)


def test_plan_without_trial_starts_active_and_one_trial_per_subscription() -> None:
    t0 = datetime(2024, 5, 10, 12, tzinfo=UTC)
    state = step(None, create(trial_days=None, plan=ENTERPRISE, quantity=10), t0)
    assert state.status is Status.ACTIVE
    granted = apply(state, cmd("start_trial", trial_days=30), t0 + timedelta(days=2))
    assert granted.state.status is Status.TRIAL and granted.state.current_period_end is None
    assert TimerKind.RENEWAL_DUE in granted.timers_to_cancel
    again = step(granted.state, cmd("convert_trial"), t0 + timedelta(days=3))
    assert (
        refuse(again, cmd("start_trial", trial_days=30), t0 + timedelta(days=4)).code
        is Reason.TRIAL_ALREADY_USED
    )


# --- approval -----------------------------------------------------------------------------------


def test_manual_approval_holds_in_pending_approval_until_approved() -> None:
    t0 = datetime(2024, 6, 1, 9, tzinfo=UTC)
    pending = apply(None, create(approval="manual", trial_days=0), t0)
    state = pending.state
    assert state.status is Status.PENDING_APPROVAL and pending.timers_to_set == ()
    assert not state.can_create_instances
    for kind, fields in [("change_quantity", {"quantity": 3}), ("pause", {}), ("renew", {}), ("suspend", {})]:
        assert refuse(state, cmd(kind, **fields), t0 + timedelta(days=1)).code is Reason.AWAITING_APPROVAL
    approved = apply(state, cmd("approve", actor="ops:alice", reason="KYC ok"), t0 + timedelta(days=3))
    s = approved.state
    assert s.status is Status.ACTIVE and s.approved_at == t0 + timedelta(days=3)
    assert s.current_period_start == date(2024, 6, 4)  # the paid period starts on approval
    assert event_types(approved) == ["SubscriptionApproved", "SubscriptionActivated"]
    assert (approved.audit.actor, approved.audit.reason) == ("ops:alice", "KYC ok")
    assert timer(approved, TimerKind.RENEWAL_DUE).due_at == datetime(2024, 7, 4, tzinfo=UTC)


def test_manual_approval_of_a_trial_starts_the_trial() -> None:
    t0 = datetime(2024, 6, 1, 9, tzinfo=UTC)
    state = step(None, create(approval="manual", trial_days=14), t0)
    approved = apply(state, cmd("approve"), t0 + timedelta(days=1))
    assert approved.state.status is Status.TRIAL
    assert timer(approved, TimerKind.TRIAL_END).due_at == t0 + timedelta(days=15)


def test_rejected_request_is_terminated_and_cannot_come_back() -> None:
    t0 = datetime(2024, 6, 1, 9, tzinfo=UTC)
    state = step(None, create(approval="manual"), t0)
    rejected = apply(
        state, cmd("reject", actor="ops:alice", reason="sanctions list"), t0 + timedelta(hours=2)
    )
    assert rejected.state.status is Status.TERMINATED
    assert refuse(rejected.state, cmd("reactivate"), t0 + timedelta(days=1)).code is Reason.ENDED


def test_expired_approval_request_cannot_be_reactivated() -> None:
    t0 = datetime(2024, 6, 1, 9, tzinfo=UTC)
    state = step(step(None, create(approval="manual"), t0), cmd("expire"), t0 + timedelta(days=30))
    assert refuse(state, cmd("reactivate"), t0 + timedelta(days=31)).code is Reason.NEVER_APPROVED


# --- pauses -------------------------------------------------------------------------------------


def test_pause_with_resume_date_sets_a_pause_resume_timer_and_resumes_on_the_cycle() -> None:
    t0 = datetime(2024, 1, 15, 9, tzinfo=UTC)
    state = step(None, create(), t0)  # periods on the 15th
    paused = apply(
        state, cmd("pause", resume_on="2024-03-20", reason="seasonal"), datetime(2024, 1, 20, tzinfo=UTC)
    )
    assert paused.state.status is Status.PAUSED and paused.state.resume_on == date(2024, 3, 20)
    resume_timer = timer(paused, TimerKind.PAUSE_RESUME)
    assert resume_timer.due_at == datetime(2024, 3, 20, tzinfo=UTC) and resume_timer.command == "resume"
    # billing stops: no renewal and no notice while paused
    assert set(paused.timers_to_cancel) == {TimerKind.RENEWAL_DUE, TimerKind.UPCOMING_CHARGE_NOTICE}
    assert refuse(paused.state, cmd("renew"), datetime(2024, 2, 15, tzinfo=UTC)).code is Reason.NOT_ALLOWED

    resumed = fire(paused.state, resume_timer)
    s = resumed.state
    assert s.status is Status.ACTIVE and s.paused_at is None and s.resume_on is None
    # picked up on the cycle: the anchored period that contains the resume day
    assert (s.current_period_start, s.current_period_end) == (date(2024, 3, 15), date(2024, 4, 15))
    assert timer(resumed, TimerKind.RENEWAL_DUE).due_at == datetime(2024, 4, 15, tzinfo=UTC)
    assert resumed.timers_to_cancel == (TimerKind.PAUSE_RESUME,)


def test_pause_without_resume_date_waits_for_a_resume_command() -> None:
    state = step(None, create(), datetime(2024, 1, 15, tzinfo=UTC))
    paused = apply(state, cmd("pause"), datetime(2024, 1, 16, tzinfo=UTC))
    assert paused.timers_to_set == ()
    assert refuse(state, cmd("pause", resume_on="2024-01-16"), datetime(2024, 1, 16, 8, tzinfo=UTC)).code is (
        Reason.INVALID_RESUME_DATE
    )


def test_a_scheduled_change_whose_boundary_passed_while_paused_applies_on_resume() -> None:
    state = step(None, create(), datetime(2024, 1, 15, tzinfo=UTC))
    state = step(
        state,
        cmd("change_plan", plan=STARTER.model_dump(), timing="period_end"),
        datetime(2024, 1, 16, tzinfo=UTC),
    )
    state = step(state, cmd("pause"), datetime(2024, 1, 17, tzinfo=UTC))
    resumed = apply(state, cmd("resume"), datetime(2024, 4, 2, tzinfo=UTC))
    assert resumed.state.plan == STARTER and resumed.state.scheduled_change is None
    assert event_types(resumed) == ["PlanChanged", "SubscriptionResumed"]


# --- plan, quantity and add-on changes ----------------------------------------------------------


def test_upgrade_immediately_keeps_from_and_to_plan_and_tier() -> None:
    state = step(None, create(plan=STARTER, quantity=3), datetime(2024, 1, 10, tzinfo=UTC))
    d = apply(
        state,
        cmd("change_plan", plan=PRO.model_dump(), timing="immediate"),
        datetime(2024, 1, 20, tzinfo=UTC),
    )
    (changed,) = d.events
    assert isinstance(changed, ev.PlanChanged)
    assert (changed.from_plan_id, changed.from_tier, changed.to_plan_id, changed.to_tier) == (
        "starter",
        1,
        "pro",
        2,
    )
    assert (changed.direction, changed.from_quantity, changed.to_quantity) == ("upgrade", 3, 3)
    assert (changed.period_start, changed.period_end) == (date(2024, 1, 10), date(2024, 2, 10))
    assert d.state.plan == PRO and d.timers_to_set == () and d.timers_to_cancel == ()


def test_downgrade_at_period_end_is_scheduled_and_applied_by_the_renewal() -> None:
    state = step(None, create(plan=PRO, quantity=4), datetime(2024, 1, 10, tzinfo=UTC))
    scheduled = apply(
        state,
        cmd("change_plan", plan=STARTER.model_dump(), timing="period_end"),
        datetime(2024, 1, 20, tzinfo=UTC),
    )
    (event,) = scheduled.events
    assert isinstance(event, ev.PlanChangeScheduled)
    assert (event.direction, event.effective_on) == ("downgrade", date(2024, 2, 10))
    assert scheduled.state.plan == PRO  # nothing changes until the boundary
    # the period-end timer now says what the boundary will do
    assert scheduled.timers_to_cancel == (TimerKind.RENEWAL_DUE,)
    boundary = timer(scheduled, TimerKind.SCHEDULED_PLAN_CHANGE)
    assert boundary.due_at == datetime(2024, 2, 10, tzinfo=UTC) and boundary.command == "renew"

    renewed = fire(scheduled.state, boundary)
    assert event_types(renewed) == ["PlanChanged", "SubscriptionRenewed"]
    changed, renewal = renewed.events
    assert isinstance(changed, ev.PlanChanged) and isinstance(renewal, ev.SubscriptionRenewed)
    assert (changed.timing, changed.direction, changed.to_quantity) == ("period_end", "downgrade", 4)
    assert (changed.period_start, changed.period_end) == (date(2024, 2, 10), date(2024, 3, 10))
    assert (renewal.plan_id, renewal.period_start) == ("starter", date(2024, 2, 10))
    assert renewed.state.plan == STARTER and renewed.state.scheduled_change is None
    assert timer(renewed, TimerKind.RENEWAL_DUE).due_at == datetime(2024, 3, 10, tzinfo=UTC)


def test_sidegrade_and_undo_of_a_scheduled_change() -> None:
    state = step(None, create(plan=PRO), datetime(2024, 1, 10, tzinfo=UTC))
    state = step(
        state,
        cmd("change_plan", plan=PRO_EU.model_dump(), timing="period_end"),
        datetime(2024, 1, 11, tzinfo=UTC),
    )
    assert state.scheduled_change is not None and state.plan.direction_to(PRO_EU) == "sidegrade"
    undone = apply(state, cmd("undo_scheduled_change"), datetime(2024, 1, 12, tzinfo=UTC))
    assert undone.state.scheduled_change is None
    assert event_types(undone) == ["ScheduledPlanChangeDropped"]
    assert undone.timers_to_cancel == (TimerKind.SCHEDULED_PLAN_CHANGE,)
    assert timer(undone, TimerKind.RENEWAL_DUE).due_at == datetime(2024, 2, 10, tzinfo=UTC)
    assert refuse(undone.state, cmd("undo_scheduled_change"), datetime(2024, 1, 13, tzinfo=UTC)).code is (
        Reason.NOTHING_SCHEDULED
    )


def test_an_immediate_change_supersedes_a_scheduled_one() -> None:
    state = step(None, create(plan=PRO), datetime(2024, 1, 10, tzinfo=UTC))
    state = step(
        state,
        cmd("change_plan", plan=STARTER.model_dump(), timing="period_end"),
        datetime(2024, 1, 11, tzinfo=UTC),
    )
    d = apply(
        state,
        cmd("change_plan", plan=ENTERPRISE.model_dump(), quantity=10),
        datetime(2024, 1, 12, tzinfo=UTC),
    )
    assert event_types(d) == ["ScheduledPlanChangeDropped", "PlanChanged"]
    assert d.state.plan == ENTERPRISE and d.state.quantity == 10 and d.state.scheduled_change is None


def test_quantity_and_add_on_changes_carry_old_and_new_values() -> None:
    state = step(None, create(plan=PRO, quantity=2), datetime(2024, 1, 10, tzinfo=UTC))
    d = apply(state, cmd("change_quantity", quantity=7), datetime(2024, 1, 11, tzinfo=UTC))
    (q,) = d.events
    assert isinstance(q, ev.QuantityChanged) and (q.from_quantity, q.to_quantity) == (2, 7)
    d = apply(
        d.state, cmd("add_addon", addon=STORAGE.model_dump(), quantity=3), datetime(2024, 1, 12, tzinfo=UTC)
    )
    (added,) = d.events
    assert isinstance(added, ev.AddOnAdded) and (added.addon_plan_id, added.quantity) == ("extra-storage", 3)
    assert refuse(
        d.state, cmd("add_addon", addon=STORAGE.model_dump()), datetime(2024, 1, 13, tzinfo=UTC)
    ).code is (Reason.ADDON_ALREADY_PRESENT)
    d = apply(d.state, cmd("remove_addon", addon_plan_id="extra-storage"), datetime(2024, 1, 14, tzinfo=UTC))
    (removed,) = d.events
    assert isinstance(removed, ev.AddOnRemoved) and removed.quantity == 3 and d.state.addons == ()


# --- billing trouble, suspension ----------------------------------------------------------------


def test_past_due_keeps_renewing_and_recovers() -> None:
    state = step(None, create(), datetime(2024, 1, 10, tzinfo=UTC))
    past_due = apply(state, cmd("mark_past_due"), datetime(2024, 1, 12, tzinfo=UTC))
    assert past_due.timers_to_set == () and past_due.timers_to_cancel == ()  # billing goes on
    renewed = apply(past_due.state, cmd("renew"), datetime(2024, 2, 10, tzinfo=UTC))
    assert renewed.state.status is Status.PAST_DUE
    recovered = apply(renewed.state, cmd("payment_recovered"), datetime(2024, 2, 12, tzinfo=UTC))
    assert recovered.state.status is Status.ACTIVE
    assert refuse(recovered.state, cmd("payment_recovered"), datetime(2024, 2, 13, tzinfo=UTC)).code is (
        Reason.ALREADY_IN_STATE
    )


def test_suspension_keeps_existing_instances_but_blocks_new_ones() -> None:
    state = step(None, create(), datetime(2024, 1, 10, tzinfo=UTC))
    assert state.can_create_instances
    suspended = step(
        state, cmd("suspend", actor="ops:bob", reason="payment pending"), datetime(2024, 1, 12, tzinfo=UTC)
    )
    assert suspended.status is Status.SUSPENDED and not suspended.can_create_instances
    assert (
        refuse(suspended, cmd("suspend"), datetime(2024, 1, 13, tzinfo=UTC)).code is Reason.ALREADY_IN_STATE
    )
    reactivated = apply(suspended, cmd("reactivate"), datetime(2024, 1, 20, tzinfo=UTC))
    assert reactivated.state.status is Status.ACTIVE and reactivated.state.can_create_instances
    assert reactivated.state.billing_anchor == state.billing_anchor  # same cycle


# --- cancellation, termination, grace periods ---------------------------------------------------


def test_non_renewing_becomes_cancelled_at_period_end() -> None:
    state = step(None, create(), datetime(2024, 1, 10, tzinfo=UTC))
    scheduled = apply(
        state, cmd("cancel", timing="period_end", reason="too expensive"), datetime(2024, 1, 25, tzinfo=UTC)
    )
    assert scheduled.state.status is Status.NON_RENEWING
    assert set(scheduled.timers_to_cancel) == {TimerKind.RENEWAL_DUE, TimerKind.UPCOMING_CHARGE_NOTICE}
    end = timer(scheduled, TimerKind.SCHEDULED_CANCELLATION)
    assert end.due_at == datetime(2024, 2, 10, tzinfo=UTC) and end.command == "renew"
    assert scheduled.state.can_create_instances  # service continues until the end of the term

    cancelled = fire(scheduled.state, end)
    s = cancelled.state
    assert s.status is Status.CANCELLED and s.ended_at == datetime(2024, 2, 10, tzinfo=UTC)
    (event,) = cancelled.events
    assert isinstance(event, ev.SubscriptionCancelled) and event.timing == "period_end"
    assert timer(cancelled, TimerKind.GRACE_PERIOD_END).due_at == datetime(2024, 3, 11, tzinfo=UTC)
    assert cancelled.timers_to_cancel == (TimerKind.SCHEDULED_CANCELLATION,)


def test_uncancel_before_the_period_end_restores_renewal() -> None:
    state = step(None, create(), datetime(2024, 1, 10, tzinfo=UTC))
    state = step(state, cmd("cancel", timing="period_end"), datetime(2024, 1, 25, tzinfo=UTC))
    assert (
        refuse(state, cmd("undo_scheduled_change"), datetime(2024, 2, 10, 1, tzinfo=UTC)).code
        is Reason.TOO_LATE
    )
    undone = apply(state, cmd("undo_scheduled_change"), datetime(2024, 2, 9, tzinfo=UTC))
    assert undone.state.status is Status.ACTIVE and event_types(undone) == ["CancellationRevoked"]
    assert timer(undone, TimerKind.RENEWAL_DUE).due_at == datetime(2024, 2, 10, tzinfo=UTC)


def test_immediate_cancellation_ends_now() -> None:
    state = step(None, create(), datetime(2024, 1, 10, tzinfo=UTC))
    d = apply(state, cmd("cancel", timing="immediate"), datetime(2024, 1, 25, 16, tzinfo=UTC))
    assert d.state.status is Status.CANCELLED and d.state.ended_at == datetime(2024, 1, 25, 16, tzinfo=UTC)
    assert not d.state.can_create_instances


def test_terminate_sets_the_grace_period_end_timer() -> None:
    state = step(None, create(), datetime(2024, 1, 10, tzinfo=UTC))
    at = datetime(2024, 1, 20, 10, tzinfo=UTC)
    d = apply(state, cmd("terminate", actor="ops:carol", reason="terms violation"), at)
    s = d.state
    assert s.status is Status.TERMINATED and s.grace_period_ends_at == at + timedelta(days=30)
    grace = timer(d, TimerKind.GRACE_PERIOD_END)
    assert grace.due_at == at + timedelta(days=30) and grace.command is None  # data deletion, not a command
    assert set(d.timers_to_cancel) == {TimerKind.RENEWAL_DUE, TimerKind.UPCOMING_CHARGE_NOTICE}
    (event,) = d.events
    assert (
        isinstance(event, ev.SubscriptionTerminated) and event.grace_period_ends_at == s.grace_period_ends_at
    )
    assert (d.audit.from_status, d.audit.to_status, d.audit.actor, d.audit.reason) == (
        Status.ACTIVE,
        Status.TERMINATED,
        "ops:carol",
        "terms violation",
    )
    short = apply(state, cmd("terminate", grace_period_days=0), at)
    assert short.state.grace_period_ends_at == at


def test_terminating_a_cancelled_subscription_keeps_its_deletion_date() -> None:
    state = step(None, create(), datetime(2024, 1, 10, tzinfo=UTC))
    cancelled = step(state, cmd("cancel", timing="immediate"), datetime(2024, 1, 11, tzinfo=UTC))
    d = apply(cancelled, cmd("terminate"), datetime(2024, 1, 20, tzinfo=UTC))
    assert d.state.grace_period_ends_at == cancelled.grace_period_ends_at
    assert d.timers_to_set == () and d.timers_to_cancel == ()


def test_reactivation_within_grace_starts_a_new_cycle_and_not_after() -> None:
    state = step(None, create(), datetime(2024, 1, 10, tzinfo=UTC))
    cancelled = step(state, cmd("cancel", timing="immediate"), datetime(2024, 1, 11, tzinfo=UTC))
    late = cancelled.grace_period_ends_at
    assert late is not None
    assert refuse(cancelled, cmd("reactivate"), late).code is Reason.GRACE_PERIOD_OVER
    back = apply(cancelled, cmd("reactivate"), datetime(2024, 1, 31, 8, tzinfo=UTC))
    s = back.state
    assert s.status is Status.ACTIVE and s.ended_at is None and s.grace_period_ends_at is None
    assert (s.billing_anchor, s.current_period_end) == (date(2024, 1, 31), date(2024, 2, 29))
    assert back.timers_to_cancel == (TimerKind.GRACE_PERIOD_END,)
    assert invariant_violations(s) == []


def test_effective_at_is_used_when_given_and_now_is_recorded() -> None:
    state = step(None, create(), datetime(2024, 1, 10, tzinfo=UTC))
    effective = datetime(2024, 1, 15, tzinfo=UTC)
    d = decide(state, cmd("suspend", effective_at=effective), now=datetime(2024, 1, 15, 0, 5, tzinfo=UTC))
    assert isinstance(d, Decision)
    assert d.audit.effective_at == effective and d.audit.recorded_at == datetime(
        2024, 1, 15, 0, 5, tzinfo=UTC
    )
    assert d.state.updated_at == effective


def test_renewal_catches_up_one_period_at_a_time() -> None:
    state = step(None, create(), datetime(2024, 1, 10, tzinfo=UTC))
    late = datetime(2024, 4, 2, tzinfo=UTC)  # the scheduler was down for months
    d = apply(state, cmd("renew"), late)
    assert d.state.current_period_start == date(2024, 2, 10)
    assert timer(d, TimerKind.RENEWAL_DUE).due_at == start_of_day(
        date(2024, 3, 10)
    )  # due: fires again at once


# --- billing day independent of the start (issue 11) --------------------------------------------


def test_account_billing_day_31_starts_with_a_stub_and_renews_on_month_ends() -> None:
    """Kill Bill's account BCD: created Mar 5 with billing day 31, the first period is Mar 5 - Mar 31."""
    created = datetime(2025, 3, 5, 10, tzinfo=UTC)
    decision = apply(None, create(cycle_day=31), created)
    state = decision.state
    # The anchor is the boundary before the start, Feb 28 (clamped), returning to the 31st.
    assert (state.billing_anchor, state.anchor_day) == (date(2025, 2, 28), 31)
    assert (state.current_period_start, state.current_period_end) == (date(2025, 3, 5), date(2025, 3, 31))
    activated = [e for e in decision.events if e.type == "SubscriptionActivated"]
    assert [(e.period_start, e.period_end) for e in activated] == [(date(2025, 3, 5), date(2025, 3, 31))]  # type: ignore[attr-defined]
    renewals: list[date] = []
    for _ in range(3):
        decision = fire(state, timer(decision, TimerKind.RENEWAL_DUE))
        state = decision.state
        renewals.append(state.current_period_start)  # type: ignore[arg-type]
    assert renewals == [date(2025, 3, 31), date(2025, 4, 30), date(2025, 5, 31)]


def test_calendar_billing_quarterly_periods_start_on_quarter_days() -> None:
    """Lago's calendar billing: a quarterly subscription created May 10 runs May 10 - Jul 1, then Jul 1 - Oct 1."""
    decision = apply(
        None, create(calendar_cycle=True, billing_interval="P3M"), datetime(2025, 5, 10, 8, tzinfo=UTC)
    )
    state = decision.state
    assert (state.current_period_start, state.current_period_end) == (date(2025, 5, 10), date(2025, 7, 1))
    decision = fire(state, timer(decision, TimerKind.RENEWAL_DUE))
    assert (decision.state.current_period_start, decision.state.current_period_end) == (
        date(2025, 7, 1),
        date(2025, 10, 1),
    )


def test_interval_change_now_restarts_the_cycle_and_at_period_end_on_the_boundary() -> None:
    """Monthly -> yearly now: the cycle restarts on the change day. Yearly -> monthly at the period end."""
    state = step(None, create(), datetime(2025, 3, 1, 9, tzinfo=UTC))
    decision = apply(
        state,
        cmd("change_plan", plan=PRO.model_dump(), billing_interval="P1Y", timing="immediate"),
        datetime(2025, 3, 16, 12, tzinfo=UTC),
    )
    s = decision.state
    assert (s.billing_interval, s.billing_anchor, s.current_period_start, s.current_period_end) == (
        "P1Y",
        date(2025, 3, 16),
        date(2025, 3, 16),
        date(2026, 3, 16),
    )
    [changed] = [e for e in decision.events if e.type == "PlanChanged"]
    assert changed.billing_interval == "P1Y"  # type: ignore[attr-defined]
    later = apply(
        s,
        cmd("change_plan", plan=PRO.model_dump(), billing_interval="P1M", timing="period_end"),
        datetime(2025, 6, 1, 12, tzinfo=UTC),
    )
    assert later.state.billing_interval == "P1Y" and later.state.scheduled_change is not None
    renewed = fire(later.state, timer(later, TimerKind.SCHEDULED_PLAN_CHANGE))
    r = renewed.state
    assert (r.billing_interval, r.current_period_start, r.current_period_end) == (
        "P1M",
        date(2026, 3, 16),
        date(2026, 4, 16),
    )
    assert [e.type for e in renewed.events] == ["PlanChanged", "SubscriptionRenewed"]


def test_backdated_start_bills_the_elapsed_periods_and_keeps_the_anchor() -> None:
    """Stripe's backdate_start_date: created Feb 14 with a start on Jan 1; the cycle stays on the 1st."""
    result = decide(
        None,
        create(effective_at=datetime(2025, 1, 1, 12, tzinfo=UTC)),
        now=datetime(2025, 2, 14, 9, tzinfo=UTC),
    )
    assert isinstance(result, Decision)
    s = result.state
    assert (s.billing_anchor, s.current_period_start, s.current_period_end) == (
        date(2025, 1, 1),
        date(2025, 2, 1),
        date(2025, 3, 1),
    )
    [activated] = [e for e in result.events if e.type == "SubscriptionActivated"]
    assert (activated.period_start, activated.billed_through) == (date(2025, 1, 1), date(2025, 2, 14))  # type: ignore[attr-defined]
    # Not backdated: no billed_through.
    fresh = decide(None, create(), now=datetime(2025, 2, 14, 9, tzinfo=UTC))
    assert isinstance(fresh, Decision)
    assert [e.billed_through for e in fresh.events if e.type == "SubscriptionActivated"] == [None]  # type: ignore[attr-defined]


def test_default_plan_change_timing_comes_from_the_shared_pair_rules() -> None:
    """Without a timing, the lifecycle uses the rules billing invoices by (pairs first, then the class)."""
    from services.lifecycle.domain.approval import load_approval_policy
    from services.lifecycle.domain.decode import decode_command
    from services.lifecycle.handlers import PLAN_CHANGE_RULES_PATH
    from shared.catalog import load_catalog
    from shared.catalog.change_rules import PairRule, PlanChangePolicy, load_plan_change_rules
    from shared.contracts import events as wire_ev
    from shared.contracts.commands import params_for

    current = step(None, create(plan=STARTER), datetime(2025, 3, 1, 9, tzinfo=UTC))

    def timing(to_plan: str, rules: PlanChangePolicy | None) -> str:
        command = wire_ev.SubscriptionCommand(
            subscription_id=SUB,
            idempotency_key=key(),
            channel="direct",
            effective_at=datetime(2025, 3, 10, 12, tzinfo=UTC),
            actor="user:test",
            params=params_for("change_plan", plan_id=to_plan),
        )
        decoded = decode_command(
            command,
            current,
            catalog=load_catalog(),
            approval_policy=load_approval_policy(),
            plan_change_rules=rules,
        )
        return str(decoded.timing)  # type: ignore[attr-defined]

    shipped = load_plan_change_rules(PLAN_CHANGE_RULES_PATH)
    assert timing("pro", shipped) == "immediate"  # an upgrade, by class
    # A pair rule makes this upgrade wait for the period end, as billing will invoice it.
    held = PlanChangePolicy(
        pairs=(PairRule.model_validate({"from": "starter", "to": "pro", "timing": "period_end"}),)
    )
    assert timing("pro", held) == "period_end"
    assert timing("pro", None) == "immediate"  # no rules: the tier decides, as before


def test_catalog_alignment_per_interval_decides_the_billing_day() -> None:
    """Kill Bill's default catalog: monthly items on the account's day, annual ones on their own date."""
    from services.lifecycle.domain.decode import _cycle_terms
    from shared.catalog import load_catalog
    from shared.contracts.commands import params_for

    catalog = load_catalog().model_copy(
        update={"alignment": {"P1M": "account", "P1Y": "subscription", "P3M": "calendar"}}
    )

    def terms(interval: str) -> dict[str, object]:
        return _cycle_terms(
            catalog, params_for("create", plan_id="pro", billing_interval=interval, cycle_day=15)
        )  # type: ignore[arg-type]

    assert terms("P1M") == {"cycle_day": 15, "calendar_cycle": False}
    assert terms("P1Y") == {"cycle_day": None, "calendar_cycle": False}
    assert terms("P3M") == {"cycle_day": None, "calendar_cycle": True}
    unset = _cycle_terms(load_catalog(), params_for("create", plan_id="pro", cycle_day=15))  # type: ignore[arg-type]
    assert unset == {"cycle_day": 15, "calendar_cycle": False}  # no alignment configured: as given


def test_interval_change_keeping_the_billing_day() -> None:
    """``interval_change_anchor: keep``: the anchor stays; the new interval's period is counted from it.

    Monthly from Mar 1; quarterly now on Mar 16: the quarter Mar 1 - Jun 1 (billing charges Mar 16 -
    Jun 1). Back to monthly at the period end, Jun 1, a boundary of both: Jun 1 - Jul 1, anchor kept.
    Yearly at the end of June (Jul 1 is no yearly boundary from Mar 1): the cycle restarts on Jul 1.
    """
    state = step(None, create(), datetime(2025, 3, 1, 9, tzinfo=UTC))
    now = apply(
        state,
        cmd(
            "change_plan", plan=PRO.model_dump(), billing_interval="P3M", timing="immediate", keep_anchor=True
        ),
        datetime(2025, 3, 16, 12, tzinfo=UTC),
    )
    s = now.state
    assert (s.billing_interval, s.billing_anchor, s.current_period_start, s.current_period_end) == (
        "P3M",
        date(2025, 3, 1),
        date(2025, 3, 1),
        date(2025, 6, 1),
    )
    later = apply(
        s,
        cmd(
            "change_plan",
            plan=PRO.model_dump(),
            billing_interval="P1M",
            timing="period_end",
            keep_anchor=True,
        ),
        datetime(2025, 4, 10, 12, tzinfo=UTC),
    )
    monthly = fire(later.state, timer(later, TimerKind.SCHEDULED_PLAN_CHANGE)).state
    assert (
        monthly.billing_interval,
        monthly.billing_anchor,
        monthly.current_period_start,
        monthly.current_period_end,
    ) == (
        "P1M",
        date(2025, 3, 1),
        date(2025, 6, 1),
        date(2025, 7, 1),
    )
    yearly = apply(
        monthly,
        cmd(
            "change_plan",
            plan=PRO.model_dump(),
            billing_interval="P1Y",
            timing="period_end",
            keep_anchor=True,
        ),
        datetime(2025, 6, 10, 12, tzinfo=UTC),
    )
    y = fire(yearly.state, timer(yearly, TimerKind.SCHEDULED_PLAN_CHANGE)).state
    assert (y.billing_interval, y.billing_anchor, y.current_period_start, y.current_period_end) == (
        "P1Y",
        date(2025, 7, 1),
        date(2025, 7, 1),
        date(2026, 7, 1),
    )


def test_keep_anchor_comes_from_the_shared_policy() -> None:
    """The lifecycle reads ``interval_change_anchor`` from the same plan_change rules billing uses."""
    from services.lifecycle.domain.approval import load_approval_policy
    from services.lifecycle.domain.decode import decode_command
    from shared.catalog import load_catalog
    from shared.catalog.change_rules import PlanChangePolicy
    from shared.contracts import events as wire_ev
    from shared.contracts.commands import params_for

    current = step(None, create(), datetime(2025, 3, 1, 9, tzinfo=UTC))
    command = wire_ev.SubscriptionCommand(
        subscription_id=SUB,
        idempotency_key=key(),
        channel="direct",
        effective_at=datetime(2025, 3, 16, 12, tzinfo=UTC),
        actor="user:test",
        params=params_for("change_plan", plan_id="pro", billing_interval="P1Y", timing="immediate"),
    )

    def keep(rules: PlanChangePolicy | None) -> bool:
        decoded = decode_command(
            command,
            current,
            catalog=load_catalog(),
            approval_policy=load_approval_policy(),
            plan_change_rules=rules,
        )
        return bool(decoded.keep_anchor)  # type: ignore[attr-defined]

    assert keep(PlanChangePolicy(interval_change_anchor="keep")) is True
    assert keep(PlanChangePolicy()) is False and keep(None) is False
