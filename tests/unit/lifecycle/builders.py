"""Test builders: plans, a clock, states in every status reached by real commands, valid commands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.lifecycle.domain import (
    Command,
    CommandKind,
    Create,
    Decision,
    PlanRef,
    Rejection,
    Status,
    SubscriptionState,
    decide,
)
from services.lifecycle.domain.model import start_of_day
from services.lifecycle.domain.table import RowKey

STARTER = PlanRef(plan_id="starter", tier=1, trial_days=14, min_quantity=1, max_quantity=10)
PRO = PlanRef(plan_id="pro", tier=2, trial_days=14, min_quantity=1, max_quantity=100)
PRO_EU = PlanRef(plan_id="pro-eu", tier=2, trial_days=14, min_quantity=1, max_quantity=100)
ENTERPRISE = PlanRef(plan_id="enterprise", tier=3, trial_days=0, min_quantity=10, max_quantity=10000)
STORAGE = PlanRef(plan_id="extra-storage", kind="addon", min_quantity=1, max_quantity=100)
BACKUP = PlanRef(plan_id="backup", kind="addon", min_quantity=1, max_quantity=5)

SUB = "sub-1"
T0 = datetime(2024, 1, 31, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

_counter = 0


def key() -> str:
    """A fresh idempotency key."""
    global _counter
    _counter += 1
    return f"k-{_counter}"


def cmd(kind: CommandKind | str, **fields: Any) -> Command:
    """A command of ``kind`` for :data:`SUB` with a fresh idempotency key."""
    from services.lifecycle.domain import parse_command

    return parse_command({"kind": str(kind), "subscription_id": SUB, "idempotency_key": key(), **fields})


def create(
    *, approval: str = "auto", trial_days: int | None = 0, plan: PlanRef = PRO, quantity: int = 1, **kw: Any
) -> Create:
    """A create command (no trial by default)."""
    return Create(
        subscription_id=SUB,
        idempotency_key=key(),
        channel="direct",
        account_id="acct-1",
        customer_id="cus-1",
        plan=plan,
        quantity=quantity,
        approval=approval,  # type: ignore[arg-type]
        trial_days=trial_days,
        **kw,
    )


def apply(state: SubscriptionState | None, command: Command, at: datetime) -> Decision:
    """Run ``command`` at ``at`` and insist it is accepted."""
    result = decide(state, command, now=at)
    assert isinstance(result, Decision), f"{command.kind} refused: {result}"
    return result


def step(state: SubscriptionState | None, command: Command, at: datetime) -> SubscriptionState:
    """The state after an accepted ``command``."""
    return apply(state, command, at).state


def refuse(state: SubscriptionState | None, command: Command, at: datetime) -> Rejection:
    """Run ``command`` at ``at`` and insist it is refused."""
    result = decide(state, command, now=at)
    assert isinstance(result, Rejection), f"{command.kind} unexpectedly accepted"
    return result


@dataclass(frozen=True)
class Arranged:
    """A state, a command to try on it and when."""

    state: SubscriptionState | None
    command: Command
    at: datetime


def state_in(
    row: RowKey, *, addon: bool = False, scheduled: bool = False, trial_days: int = 0
) -> SubscriptionState | None:
    """A state in status ``row`` reached through real commands from T0 (hours apart).

    ``addon``: with an extra-storage add-on; ``scheduled``: with a plan change scheduled at period
    end (made while active); ``trial_days``: requested trial (pending approval only).
    """
    if row is None:
        return None
    t = T0
    if row is Status.PENDING_APPROVAL:
        return step(None, create(approval="manual", trial_days=trial_days), t)
    if row in (Status.TRIAL, Status.EXPIRED):
        s = step(None, create(trial_days=14), t)
        if addon:
            s = step(s, cmd("add_addon", addon=STORAGE.model_dump(), quantity=2), t + HOUR)
        if row is Status.EXPIRED:
            assert s.trial_ends_at is not None
            s = step(s, cmd("expire"), s.trial_ends_at)
        return s
    s = step(None, create(), t)
    if addon:
        t += HOUR
        s = step(s, cmd("add_addon", addon=STORAGE.model_dump(), quantity=2), t)
    if scheduled:
        t += HOUR
        s = step(s, cmd("change_plan", plan=STARTER.model_dump(), timing="period_end"), t)
    t += HOUR
    follow: dict[Status, Command | None] = {
        Status.ACTIVE: None,
        Status.PAUSED: cmd("pause", resume_on=(t + timedelta(days=20)).date().isoformat()),
        Status.PAST_DUE: cmd("mark_past_due"),
        Status.SUSPENDED: cmd("suspend"),
        Status.NON_RENEWING: cmd("cancel", timing="period_end"),
        Status.CANCELLED: cmd("cancel", timing="immediate"),
        Status.TERMINATED: cmd("terminate"),
    }
    nxt = follow[row]
    return s if nxt is None else step(s, nxt, t)


def arrange(row: RowKey, kind: CommandKind, variant: str | None) -> Arranged:
    """A state in ``row`` and a ``kind`` command (in ``variant``) that passes every guard the table allows."""
    needs_scheduled = kind is CommandKind.UNDO_SCHEDULED_CHANGE and row is not Status.NON_RENEWING
    state = state_in(
        row,
        addon=kind is CommandKind.REMOVE_ADDON,
        scheduled=needs_scheduled,
        trial_days=14 if variant == "trial" else 0,
    )
    at = (state.updated_at if state is not None else T0) + HOUR
    if kind is CommandKind.CREATE:
        return Arranged(
            state,
            create(
                approval="manual" if variant == "manual" else "auto",
                trial_days=14 if variant == "trial" else 0,
            ),
            at,
        )
    per_kind: dict[CommandKind, dict[str, Any]] = {
        CommandKind.REJECT: {"actor": "ops:alice", "reason": "fraud check"},
        CommandKind.START_TRIAL: {"trial_days": 7},
        CommandKind.CHANGE_PLAN: {"plan": ENTERPRISE.model_dump(), "quantity": 10, "timing": variant},
        CommandKind.CHANGE_QUANTITY: {"quantity": 5, "timing": variant},
        CommandKind.ADD_ADDON: {"addon": BACKUP.model_dump(), "quantity": 1},
        CommandKind.REMOVE_ADDON: {"addon_plan_id": STORAGE.plan_id},
        CommandKind.PAUSE: {"resume_on": (at + timedelta(days=10)).date()},
        CommandKind.SUSPEND: {"actor": "ops:bob", "reason": "billing issue"},
        CommandKind.CANCEL: {"timing": variant},
        CommandKind.TERMINATE: {"actor": "ops:carol", "reason": "policy"},
    }
    fields = per_kind.get(kind, {})
    # time-guarded commands are sent when they are due
    if kind is CommandKind.RENEW and state is not None and state.current_period_end is not None:
        at = max(at, start_of_day(state.current_period_end))
    if kind is CommandKind.EXPIRE and state is not None and state.trial_ends_at is not None:
        at = max(at, state.trial_ends_at)
    return Arranged(state, cmd(kind, **fields), at)
