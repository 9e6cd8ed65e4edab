"""``decide``: (state, command, now) -> Decision | Rejection. Pure: no I/O, no clock reads.

The transition table (:mod:`services.lifecycle.domain.table`) says whether the command is allowed
in the current status and which status it leads to. The command's handler below adds the guards
that depend on the command's values or the time, and builds the new state and the events. The
timers follow from the new state (:func:`~services.lifecycle.domain.timers.timer_changes`), and
every accepted command yields exactly one audit entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, SerializeAsAny

from services.lifecycle.domain import events as ev
from services.lifecycle.domain.commands import (
    AddAddon,
    Cancel,
    ChangePlan,
    ChangeQuantity,
    Command,
    Create,
    Pause,
    RemoveAddon,
    StartTrial,
    Terminate,
)
from services.lifecycle.domain.model import (
    DEFAULT_CONFIG,
    ENDED_STATUSES,
    AddOn,
    CommandKind,
    LifecycleConfig,
    PlanRef,
    Reason,
    ScheduledPlanChange,
    Status,
    SubscriptionState,
)
from services.lifecycle.domain.table import Deny, lookup, variant_of
from services.lifecycle.domain.timers import Timer, TimerKind, timer_changes
from shared.contracts.commands import Timing
from shared.periods import add_interval, first_period, parse_interval, period_containing


class AuditEntry(BaseModel):
    """One row of the audit trail: who changed what, when and why."""

    model_config = ConfigDict(frozen=True)

    subscription_id: str
    command: CommandKind
    idempotency_key: str
    from_status: Status | None
    to_status: Status
    actor: str
    reason: str | None
    effective_at: AwareDatetime
    recorded_at: AwareDatetime


class Decision(BaseModel):
    """An accepted command: the new state, what happened, the timers to change and the audit entry."""

    model_config = ConfigDict(frozen=True)

    previous: SubscriptionState | None
    state: SubscriptionState
    command: Command
    events: tuple[SerializeAsAny[ev.DomainEvent], ...]  # subclasses keep their own fields in JSON
    timers_to_set: tuple[Timer, ...]
    timers_to_cancel: tuple[TimerKind, ...]
    audit: AuditEntry

    @property
    def from_status(self) -> Status | None:
        """Status before the command."""
        return self.previous.status if self.previous is not None else None

    @property
    def to_status(self) -> Status:
        """Status after the command."""
        return self.state.status


class Rejection(BaseModel):
    """A refused command: nothing changes. ``code`` is machine-readable, ``message`` is for people."""

    model_config = ConfigDict(frozen=True)

    state: SubscriptionState | None
    command: Command
    code: Reason
    message: str


E = TypeVar("E", bound=ev.DomainEvent)


@dataclass(frozen=True)
class _Ctx:
    """What a handler works with; ``target`` is the status the table chose."""

    state: SubscriptionState | None
    command: Command
    target: Status
    at: datetime
    config: LifecycleConfig
    now: datetime | None = None  # the clock when the command is decided (``at`` may be in the past)

    @property
    def cur(self) -> SubscriptionState:
        if self.state is None:  # only create runs without a state, and it has its own handler
            raise AssertionError("handler needs an existing subscription")
        return self.state

    def event(self, cls: type[E], **fields: Any) -> E:
        c = self.command
        return cls(
            subscription_id=c.subscription_id,
            command=c.command_kind,
            idempotency_key=c.idempotency_key,
            from_status=self.state.status if self.state is not None else None,
            to_status=self.target,
            effective_at=self.at,
            actor=c.actor,
            reason=c.reason,
            **fields,
        )

    def moved(self, **changes: Any) -> SubscriptionState:
        """The current state in the target status, with ``changes``, stamped at the effective time."""
        return self.cur.model_copy(update={"status": self.target, "updated_at": self.at, **changes})


_Outcome = tuple[SubscriptionState, list[ev.DomainEvent]] | Deny
_Handler = Callable[[_Ctx], _Outcome]


def decide(
    state: SubscriptionState | None,
    command: Command,
    *,
    now: datetime,
    config: LifecycleConfig = DEFAULT_CONFIG,
) -> Decision | Rejection:
    """Apply ``command`` to ``state`` (``None``: the subscription does not exist yet) at ``now``.

    Returns a :class:`Decision` (new state, events, timer changes, one audit entry) or a
    :class:`Rejection` (reason code and message; nothing changes). ``now`` must be timezone-aware;
    the change takes effect at ``command.effective_at`` or, when that is ``None``, at ``now``.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if state is not None and state.subscription_id != command.subscription_id:
        raise ValueError(f"command for {command.subscription_id} given the state of {state.subscription_id}")
    kind = command.command_kind
    row = state.status if state is not None else None
    target = lookup(row, kind, variant_of(state, command))
    if isinstance(target, Deny):
        return Rejection(state=state, command=command, code=target.code, message=target.message)
    at = command.effective_at or now
    outcome = _HANDLERS[kind](_Ctx(state, command, target, at, config, now))
    if isinstance(outcome, Deny):
        return Rejection(state=state, command=command, code=outcome.code, message=outcome.message)
    new_state, events = outcome
    if new_state.status is not target:  # the table is the only authority on statuses
        raise AssertionError(f"{kind} handler produced {new_state.status}, the table says {target}")
    to_set, to_cancel = timer_changes(state, new_state, config)
    audit = AuditEntry(
        subscription_id=command.subscription_id,
        command=kind,
        idempotency_key=command.idempotency_key,
        from_status=row,
        to_status=new_state.status,
        actor=command.actor,
        reason=command.reason,
        effective_at=at,
        recorded_at=now,
    )
    return Decision(
        previous=state,
        state=new_state,
        command=command,
        events=tuple(events),
        timers_to_set=to_set,
        timers_to_cancel=to_cancel,
        audit=audit,
    )


# --- helpers -------------------------------------------------------------------------------------


def _first_period(state: SubscriptionState, day: date) -> dict[str, Any]:
    """Fields that start a fresh paid period on ``day``.

    By default ``day`` becomes the billing anchor. With an account billing day or calendar
    billing the first period is a stub from ``day`` to the next boundary, and the anchor is
    the boundary on or before ``day`` (billing prorates the stub against its full period).
    """
    month_based = parse_interval(state.billing_interval)[0] == "M"
    anchor, anchor_day, start, end = first_period(
        day,
        state.billing_interval,
        cycle_day=state.cycle_day if month_based else None,
        calendar=state.calendar_cycle,
    )
    return {
        "billing_anchor": anchor,
        "anchor_day": anchor_day,
        "current_period_start": start,
        "current_period_end": end,
    }


def _period_containing(state: SubscriptionState, day: date) -> tuple[date, date]:
    # Boundaries come from the billing anchor, so a subscription anchored on the 31st keeps
    # renewing on month ends (Feb 28/29, Mar 31, Apr 30 ...) instead of drifting to the 28th.
    if state.billing_anchor is None:
        raise AssertionError("a running period needs a billing anchor")
    return period_containing(
        day, billing_anchor=state.billing_anchor, interval=state.billing_interval, anchor_day=state.anchor_day
    )


def _interval_cycle(
    state: SubscriptionState, day: date, interval: str, *, keep: bool, boundary: bool
) -> dict[str, Any]:
    """Cycle fields for a new billing ``interval`` from ``day``.

    Default: the cycle restarts on ``day`` (it becomes the anchor). ``keep``: the anchor stays
    and the period is the new interval's period around ``day`` counted from it (billing's
    engine does the same under ``interval_change_anchor: keep``); at a period ``boundary``
    only when ``day`` is a boundary of the new interval too, else the cycle restarts.
    """
    if keep and state.billing_anchor is not None:
        start, end = period_containing(
            day, billing_anchor=state.billing_anchor, interval=interval, anchor_day=state.anchor_day
        )
        if not boundary or start == day:
            return {"billing_interval": interval, "current_period_start": start, "current_period_end": end}
    return {
        "billing_interval": interval,
        "billing_anchor": day,
        "anchor_day": None,
        "current_period_start": day,
        "current_period_end": add_interval(day, interval),
    }


def _ended(ctx: _Ctx, grace_days: int | None = None) -> SubscriptionState:
    """The current state moved into an ended status: grace period set, pending things cleared."""
    days = ctx.config.grace_period_days if grace_days is None else grace_days
    return ctx.moved(
        ended_at=ctx.at,
        grace_period_ends_at=ctx.at + timedelta(days=days),
        trial_ends_at=None,
        paused_at=None,
        resume_on=None,
        scheduled_change=None,
    )


def _quantity_problem(plan: PlanRef, quantity: int) -> Deny | None:
    if plan.allows_quantity(quantity):
        return None
    upper = "" if plan.max_quantity is None else f"..{plan.max_quantity}"
    return Deny(
        Reason.QUANTITY_OUT_OF_RANGE,
        f"quantity {quantity} is outside {plan.plan_id}'s bounds {plan.min_quantity}{upper}",
    )


def _plan_changed(
    ctx: _Ctx,
    change: ScheduledPlanChange | ChangePlan,
    state: SubscriptionState,
    to_quantity: int,
    timing: Timing,
    period: tuple[date | None, date | None],
) -> ev.PlanChanged:
    return ctx.event(
        ev.PlanChanged,
        from_plan_id=state.plan.plan_id,
        from_tier=state.plan.tier,
        to_plan_id=change.plan.plan_id,
        to_tier=change.plan.tier,
        direction=state.plan.direction_to(change.plan),
        from_quantity=state.quantity,
        to_quantity=to_quantity,
        timing=timing,
        invoice=change.invoice if isinstance(change, ChangePlan) else None,
        billing_interval=change.billing_interval
        if change.billing_interval != state.billing_interval
        else None,
        period_start=period[0],
        period_end=period[1],
    )


def _apply_due_change(
    ctx: _Ctx, state: SubscriptionState, period: tuple[date, date]
) -> tuple[dict[str, Any], list[ev.DomainEvent]]:
    """Apply the scheduled plan change if its boundary is at or before the start of the new ``period``."""
    change = state.scheduled_change
    if change is None or change.effective_on > period[0]:
        return {}, []
    quantity = state.quantity if change.quantity is None else change.quantity
    cycle: dict[str, Any] = {}
    if change.billing_interval is not None and change.billing_interval != state.billing_interval:
        # A new interval restarts the cycle at the boundary where it applies, or keeps the billing
        # day when the policy says so and the boundary is one of the new interval too.
        cycle = _interval_cycle(
            state, period[0], change.billing_interval, keep=change.keep_anchor, boundary=True
        )
        cycle.pop("current_period_start")
        period = (period[0], cycle["current_period_end"])
    event: ev.DomainEvent
    if change.plan.plan_id == state.plan.plan_id and not cycle:  # a scheduled seat change
        event = ctx.event(
            ev.QuantityChanged,
            plan_id=state.plan.plan_id,
            from_quantity=state.quantity,
            to_quantity=quantity,
            timing=Timing.PERIOD_END,
        )
    else:
        event = _plan_changed(ctx, change, state, quantity, Timing.PERIOD_END, period)
    return {"plan": change.plan, "quantity": quantity, "scheduled_change": None, **cycle}, [event]


def _dropped(ctx: _Ctx, change: ScheduledPlanChange) -> ev.ScheduledPlanChangeDropped:
    return ctx.event(
        ev.ScheduledPlanChangeDropped,
        plan_id=change.plan.plan_id,
        quantity=change.quantity,
        effective_on=change.effective_on,
    )


# --- handlers, one per command -------------------------------------------------------------------


def _create(ctx: _Ctx) -> _Outcome:
    cmd = ctx.command
    assert isinstance(cmd, Create)
    if cmd.plan.kind != "base":
        return Deny(Reason.INVALID_PLAN, f"{cmd.plan.plan_id} is an add-on, not a base plan")
    if problem := _quantity_problem(cmd.plan, cmd.quantity):
        return problem
    trial_days = cmd.effective_trial_days
    state = SubscriptionState(
        subscription_id=cmd.subscription_id,
        channel=cmd.channel,
        account_id=cmd.account_id,
        customer_id=cmd.customer_id,
        status=ctx.target,
        plan=cmd.plan,
        quantity=cmd.quantity,
        billing_interval=cmd.billing_interval,
        approval_mode=cmd.approval,
        cycle_day=cmd.cycle_day,
        calendar_cycle=cmd.calendar_cycle,
        approved_at=None if ctx.target is Status.PENDING_APPROVAL else ctx.at,
        requested_trial_days=trial_days,
        created_at=ctx.at,
        updated_at=ctx.at,
    )
    events: list[ev.DomainEvent] = [
        ctx.event(
            ev.SubscriptionCreated,
            plan_id=cmd.plan.plan_id,
            tier=cmd.plan.tier,
            quantity=cmd.quantity,
            billing_interval=cmd.billing_interval,
            approval_mode=cmd.approval,
            trial_days=trial_days,
        )
    ]
    state, started = _start(ctx, state, trial_days)
    return state, events + started


def _start(
    ctx: _Ctx, state: SubscriptionState, trial_days: int
) -> tuple[SubscriptionState, list[ev.DomainEvent]]:
    """Start what an approved subscription starts with: the trial, or the first paid period."""
    if ctx.target is Status.TRIAL:
        ends = ctx.at + timedelta(days=trial_days)
        return (
            state.model_copy(update={"trial_ends_at": ends, "had_trial": True}),
            [ctx.event(ev.TrialStarted, trial_ends_at=ends)],
        )
    if ctx.target is Status.ACTIVE:
        state = state.model_copy(update=_first_period(state, ctx.at.date()))
        assert state.current_period_start is not None and state.current_period_end is not None
        first = (state.current_period_start, state.current_period_end)
        today = ctx.now.date() if ctx.now is not None else ctx.at.date()
        billed_through = None
        if today >= state.current_period_end:
            # A backdated start (Stripe's backdate_start_date): the periods already elapsed are
            # billed at once and the cycle runs on from the one containing today, anchor kept.
            start, end = _period_containing(state, today)
            state = state.model_copy(update={"current_period_start": start, "current_period_end": end})
            billed_through = today
        return state, [
            ctx.event(
                ev.SubscriptionActivated,
                period_start=first[0],
                period_end=first[1],
                billed_through=billed_through,
            )
        ]
    return state, []  # pending approval: nothing starts yet


def _approve(ctx: _Ctx) -> _Outcome:
    state = ctx.moved(approved_at=ctx.at)
    state, started = _start(ctx, state, state.requested_trial_days)
    return state, [ctx.event(ev.SubscriptionApproved), *started]


def _reject(ctx: _Ctx) -> _Outcome:
    state = _ended(ctx)
    assert state.grace_period_ends_at is not None
    return state, [ctx.event(ev.SubscriptionRejected, grace_period_ends_at=state.grace_period_ends_at)]


def _start_trial(ctx: _Ctx) -> _Outcome:
    cmd, cur = ctx.command, ctx.cur
    assert isinstance(cmd, StartTrial)
    if cmd.trial_days <= 0:
        return Deny(Reason.INVALID_TRIAL, "trial_days must be positive")
    if cur.had_trial:
        return Deny(Reason.TRIAL_ALREADY_USED, "the subscription already had its trial")
    if cur.scheduled_change is not None:
        return Deny(Reason.SCHEDULED_CHANGE_PENDING, "a plan change is scheduled: undo it first")
    ends = ctx.at + timedelta(days=cmd.trial_days)
    # The paid period stops here (billing credits the unused part); conversion starts a new anchor.
    state = ctx.moved(
        trial_ends_at=ends,
        had_trial=True,
        billing_anchor=None,
        current_period_start=None,
        current_period_end=None,
    )
    return state, [ctx.event(ev.TrialStarted, trial_ends_at=ends)]


def _convert_trial(ctx: _Ctx) -> _Outcome:
    state = ctx.moved(trial_ends_at=None, **_first_period(ctx.cur, ctx.at.date()))
    assert state.current_period_start is not None and state.current_period_end is not None
    period = {"period_start": state.current_period_start, "period_end": state.current_period_end}
    return state, [ctx.event(ev.TrialConverted, **period), ctx.event(ev.SubscriptionActivated, **period)]


def _change_plan(ctx: _Ctx) -> _Outcome:
    cmd, cur = ctx.command, ctx.cur
    assert isinstance(cmd, ChangePlan)
    if cmd.plan.kind != "base":
        return Deny(Reason.INVALID_PLAN, f"{cmd.plan.plan_id} is an add-on, not a base plan")
    new_interval = cmd.billing_interval if cmd.billing_interval != cur.billing_interval else None
    if cmd.plan.plan_id == cur.plan.plan_id and new_interval is None:
        return Deny(Reason.NO_CHANGE, f"already on {cur.plan.plan_id} (change_quantity changes seats)")
    quantity = cur.quantity if cmd.quantity is None else cmd.quantity
    if problem := _quantity_problem(cmd.plan, quantity):
        return problem
    if cmd.timing is Timing.IMMEDIATE:
        # An immediate change supersedes a scheduled one.
        cycle: dict[str, Any] = {}
        if new_interval is not None:
            # A new interval restarts the cycle on the change date (Stripe resets the anchor), or
            # keeps the billing day: the new interval's period around the change date (keep_anchor).
            cycle = _interval_cycle(cur, ctx.at.date(), new_interval, keep=cmd.keep_anchor, boundary=False)
        state = ctx.moved(plan=cmd.plan, quantity=quantity, scheduled_change=None, **cycle)
        events: list[ev.DomainEvent] = []
        if cur.scheduled_change is not None:
            events.append(_dropped(ctx, cur.scheduled_change))
        period = (state.current_period_start, state.current_period_end)
        events.append(_plan_changed(ctx, cmd, cur, quantity, Timing.IMMEDIATE, period))
        return state, events
    assert cur.current_period_end is not None  # the table allows period_end only with a running period
    change = ScheduledPlanChange(
        plan=cmd.plan,
        quantity=cmd.quantity,
        billing_interval=new_interval,
        keep_anchor=cmd.keep_anchor,
        effective_on=cur.current_period_end,
        requested_at=ctx.at,
        actor=cmd.actor,
        reason=cmd.reason,
    )
    old = cur.scheduled_change
    if old is not None and (old.plan, old.quantity, old.billing_interval) == (
        change.plan,
        change.quantity,
        change.billing_interval,
    ):
        return Deny(Reason.NO_CHANGE, "this plan change is already scheduled")
    return ctx.moved(scheduled_change=change), [
        ctx.event(
            ev.PlanChangeScheduled,
            from_plan_id=cur.plan.plan_id,
            from_tier=cur.plan.tier,
            to_plan_id=cmd.plan.plan_id,
            to_tier=cmd.plan.tier,
            direction=cur.plan.direction_to(cmd.plan),
            from_quantity=cur.quantity,
            to_quantity=cmd.quantity,
            effective_on=change.effective_on,
        )
    ]


def _change_quantity(ctx: _Ctx) -> _Outcome:
    cmd, cur = ctx.command, ctx.cur
    assert isinstance(cmd, ChangeQuantity)
    if cmd.timing is Timing.PERIOD_END:
        return _schedule_quantity(ctx, cmd, cur)
    if cmd.quantity == cur.quantity:
        return Deny(Reason.NO_CHANGE, f"the quantity is already {cur.quantity}")
    if problem := _quantity_problem(cur.plan, cmd.quantity):
        return problem
    sched = cur.scheduled_change
    # A scheduled change that carries the quantity over must still accept it when it applies.
    if (
        sched is not None
        and sched.quantity is None
        and (problem := _quantity_problem(sched.plan, cmd.quantity))
    ):
        return Deny(problem.code, problem.message + " (the scheduled plan change keeps the quantity)")
    return ctx.moved(quantity=cmd.quantity), [
        ctx.event(
            ev.QuantityChanged,
            plan_id=cur.plan.plan_id,
            from_quantity=cur.quantity,
            to_quantity=cmd.quantity,
            invoice=cmd.invoice,
        )
    ]


def _schedule_quantity(ctx: _Ctx, cmd: ChangeQuantity, cur: SubscriptionState) -> _Outcome:
    """A seat change at the period end: stored as a scheduled change (onto a scheduled plan change, if any)."""
    assert cur.current_period_end is not None  # the table allows period_end only with a running period
    old = cur.scheduled_change
    plan = old.plan if old is not None else cur.plan
    if old is None and cmd.quantity == cur.quantity:
        return Deny(Reason.NO_CHANGE, f"the quantity is already {cur.quantity}")
    if old is not None and old.quantity == cmd.quantity:
        return Deny(Reason.NO_CHANGE, "this quantity is already scheduled")
    if problem := _quantity_problem(plan, cmd.quantity):
        return problem
    change = ScheduledPlanChange(
        plan=plan,
        quantity=cmd.quantity,
        effective_on=cur.current_period_end,
        requested_at=ctx.at,
        actor=cmd.actor,
        reason=cmd.reason,
    )
    return ctx.moved(scheduled_change=change), [
        ctx.event(
            ev.PlanChangeScheduled,
            from_plan_id=cur.plan.plan_id,
            from_tier=cur.plan.tier,
            to_plan_id=plan.plan_id,
            to_tier=plan.tier,
            direction=cur.plan.direction_to(plan),
            from_quantity=cur.quantity,
            to_quantity=cmd.quantity,
            effective_on=change.effective_on,
        )
    ]


def _add_addon(ctx: _Ctx) -> _Outcome:
    cmd, cur = ctx.command, ctx.cur
    assert isinstance(cmd, AddAddon)
    if cmd.addon.kind != "addon":
        return Deny(Reason.INVALID_PLAN, f"{cmd.addon.plan_id} is a base plan, not an add-on")
    if cur.addon(cmd.addon.plan_id) is not None:
        return Deny(Reason.ADDON_ALREADY_PRESENT, f"add-on {cmd.addon.plan_id} is already there")
    if problem := _quantity_problem(cmd.addon, cmd.quantity):
        return problem
    addons = (*cur.addons, AddOn(plan=cmd.addon, quantity=cmd.quantity))
    return ctx.moved(addons=addons), [
        ctx.event(ev.AddOnAdded, addon_plan_id=cmd.addon.plan_id, quantity=cmd.quantity)
    ]


def _remove_addon(ctx: _Ctx) -> _Outcome:
    cmd, cur = ctx.command, ctx.cur
    assert isinstance(cmd, RemoveAddon)
    line = cur.addon(cmd.addon_plan_id)
    if line is None:
        return Deny(Reason.ADDON_NOT_FOUND, f"add-on {cmd.addon_plan_id} is not on the subscription")
    addons = tuple(a for a in cur.addons if a.plan.plan_id != cmd.addon_plan_id)
    return ctx.moved(addons=addons), [
        ctx.event(ev.AddOnRemoved, addon_plan_id=cmd.addon_plan_id, quantity=line.quantity)
    ]


def _pause(ctx: _Ctx) -> _Outcome:
    cmd = ctx.command
    assert isinstance(cmd, Pause)
    if cmd.resume_on is not None and cmd.resume_on <= ctx.at.date():
        return Deny(Reason.INVALID_RESUME_DATE, f"resume date {cmd.resume_on} is not after {ctx.at.date()}")
    # The current period and any scheduled change are kept: resume picks the cycle up again.
    return ctx.moved(paused_at=ctx.at, resume_on=cmd.resume_on), [
        ctx.event(ev.SubscriptionPaused, resume_on=cmd.resume_on)
    ]


def _resume(ctx: _Ctx) -> _Outcome:
    cur = ctx.cur
    assert cur.paused_at is not None
    # Billing resumes on the cycle: the current period is the anchored one containing the resume day.
    start, end = _period_containing(cur, ctx.at.date())
    changes, events = _apply_due_change(ctx, cur, (start, end))
    end = changes.pop("current_period_end", end)
    state = ctx.moved(
        paused_at=None, resume_on=None, current_period_start=start, current_period_end=end, **changes
    )
    if state.scheduled_change is not None and state.scheduled_change.effective_on != end:
        moved_change = state.scheduled_change.model_copy(update={"effective_on": end})
        state = state.model_copy(update={"scheduled_change": moved_change})
    return state, [
        *events,
        ctx.event(ev.SubscriptionResumed, paused_at=cur.paused_at, period_start=start, period_end=end),
    ]


def _simple(event: type[ev.DomainEvent]) -> _Handler:
    """A handler that only changes the status (the table's target) and records ``event``."""

    def handle(ctx: _Ctx) -> _Outcome:
        return ctx.moved(), [ctx.event(event)]

    return handle


def _reactivate(ctx: _Ctx) -> _Outcome:
    cur = ctx.cur
    if cur.status not in ENDED_STATUSES:  # lifting a suspension: the period simply goes on
        assert cur.current_period_start is not None and cur.current_period_end is not None
        return ctx.moved(), [
            ctx.event(
                ev.SubscriptionReactivated,
                period_start=cur.current_period_start,
                period_end=cur.current_period_end,
                new_billing_anchor=False,
            )
        ]
    if cur.approved_at is None:
        return Deny(Reason.NEVER_APPROVED, "the subscription was never approved")
    assert cur.grace_period_ends_at is not None
    if ctx.at >= cur.grace_period_ends_at:
        return Deny(
            Reason.GRACE_PERIOD_OVER, f"the grace period ended at {cur.grace_period_ends_at.isoformat()}"
        )
    # Restored after an end: a new paid period and a new billing anchor from today.
    state = ctx.moved(ended_at=None, grace_period_ends_at=None, **_first_period(cur, ctx.at.date()))
    assert state.current_period_start is not None and state.current_period_end is not None
    return state, [
        ctx.event(
            ev.SubscriptionReactivated,
            period_start=state.current_period_start,
            period_end=state.current_period_end,
            new_billing_anchor=True,
        )
    ]


def _cancel(ctx: _Ctx) -> _Outcome:
    cmd, cur = ctx.command, ctx.cur
    assert isinstance(cmd, Cancel)
    if ctx.target is Status.NON_RENEWING:
        assert cur.current_period_end is not None
        # A scheduled plan change stays stored: it applies again if the cancellation is undone.
        return ctx.moved(), [ctx.event(ev.CancellationScheduled, effective_on=cur.current_period_end)]
    state = _ended(ctx)
    assert state.ended_at is not None and state.grace_period_ends_at is not None
    return state, [
        ctx.event(
            ev.SubscriptionCancelled,
            timing=Timing.IMMEDIATE,
            ended_at=state.ended_at,
            grace_period_ends_at=state.grace_period_ends_at,
        )
    ]


def _undo_scheduled_change(ctx: _Ctx) -> _Outcome:
    cur = ctx.cur
    if cur.status is Status.NON_RENEWING:
        assert cur.current_period_end is not None
        if ctx.at.date() >= cur.current_period_end:
            return Deny(Reason.TOO_LATE, f"the cancellation took effect on {cur.current_period_end}")
        return ctx.moved(), [ctx.event(ev.CancellationRevoked)]
    if cur.scheduled_change is None:
        return Deny(Reason.NOTHING_SCHEDULED, "no plan change is scheduled")
    return ctx.moved(scheduled_change=None), [_dropped(ctx, cur.scheduled_change)]


def _renew(ctx: _Ctx) -> _Outcome:
    cur = ctx.cur
    assert cur.current_period_end is not None
    if ctx.at.date() < cur.current_period_end:
        return Deny(Reason.NOT_DUE, f"the period ends on {cur.current_period_end}")
    if ctx.target is Status.CANCELLED:  # non_renewing reached its period end
        state = _ended(ctx)
        assert state.ended_at is not None and state.grace_period_ends_at is not None
        return state, [
            ctx.event(
                ev.SubscriptionCancelled,
                timing=Timing.PERIOD_END,
                ended_at=state.ended_at,
                grace_period_ends_at=state.grace_period_ends_at,
            )
        ]
    # One period per renew: a late scheduler catches up one invoice at a time.
    start, end = _period_containing(cur, cur.current_period_end)
    changes, events = _apply_due_change(ctx, cur, (start, end))
    end = changes.pop("current_period_end", end)
    state = ctx.moved(current_period_start=start, current_period_end=end, **changes)
    renewed = ctx.event(
        ev.SubscriptionRenewed,
        period_start=start,
        period_end=end,
        plan_id=state.plan.plan_id,
        quantity=state.quantity,
    )
    return state, [*events, renewed]


def _expire(ctx: _Ctx) -> _Outcome:
    cur = ctx.cur
    if cur.status is Status.TRIAL:
        assert cur.trial_ends_at is not None
        if ctx.at < cur.trial_ends_at:
            return Deny(Reason.NOT_DUE, f"the trial ends at {cur.trial_ends_at.isoformat()}")
    state = _ended(ctx)
    assert state.ended_at is not None and state.grace_period_ends_at is not None
    return state, [
        ctx.event(
            ev.SubscriptionExpired, ended_at=state.ended_at, grace_period_ends_at=state.grace_period_ends_at
        )
    ]


def _terminate(ctx: _Ctx) -> _Outcome:
    cmd, cur = ctx.command, ctx.cur
    assert isinstance(cmd, Terminate)
    if cur.is_ended:
        # Already ended (cancelled/expired): make it final; the end and the data deletion date stay.
        state = ctx.moved()
    else:
        state = _ended(ctx, cmd.grace_period_days)
    assert state.ended_at is not None and state.grace_period_ends_at is not None
    return state, [
        ctx.event(
            ev.SubscriptionTerminated,
            ended_at=state.ended_at,
            grace_period_ends_at=state.grace_period_ends_at,
        )
    ]


_HANDLERS: Mapping[CommandKind, _Handler] = {
    CommandKind.CREATE: _create,
    CommandKind.APPROVE: _approve,
    CommandKind.REJECT: _reject,
    CommandKind.START_TRIAL: _start_trial,
    CommandKind.CONVERT_TRIAL: _convert_trial,
    CommandKind.CHANGE_PLAN: _change_plan,
    CommandKind.CHANGE_QUANTITY: _change_quantity,
    CommandKind.ADD_ADDON: _add_addon,
    CommandKind.REMOVE_ADDON: _remove_addon,
    CommandKind.PAUSE: _pause,
    CommandKind.RESUME: _resume,
    CommandKind.MARK_PAST_DUE: _simple(ev.SubscriptionPastDue),
    CommandKind.PAYMENT_RECOVERED: _simple(ev.PaymentRecovered),
    CommandKind.SUSPEND: _simple(ev.SubscriptionSuspended),
    CommandKind.REACTIVATE: _reactivate,
    CommandKind.CANCEL: _cancel,
    CommandKind.UNDO_SCHEDULED_CHANGE: _undo_scheduled_change,
    CommandKind.RENEW: _renew,
    CommandKind.EXPIRE: _expire,
    CommandKind.TERMINATE: _terminate,
}
