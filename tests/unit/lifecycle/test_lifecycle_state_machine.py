"""Random command sequences (with a simulated scheduler firing timers) against the lifecycle rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from services.lifecycle.domain import (
    DEFAULT_CONFIG,
    ENDED_STATUSES,
    TIMER_COMMANDS,
    AuditEntry,
    Command,
    CommandKind,
    Decision,
    Deny,
    LifecycleConfig,
    Reason,
    Rejection,
    Status,
    SubscriptionState,
    TimerKind,
    decide,
    invariant_violations,
    lookup,
    parse_command,
    timers_for,
    variant_of,
)

from .builders import BACKUP, ENTERPRISE, PRO, PRO_EU, STARTER, STORAGE, SUB, T0

BASE_PLANS = [STARTER, PRO, PRO_EU, ENTERPRISE]
ADDONS = [STORAGE, BACKUP]
# Refusals a handler may give although the table allows the command (they depend on values or time).
GUARD_CODES = {
    Reason.NOT_DUE,
    Reason.TOO_LATE,
    Reason.NO_CHANGE,
    Reason.INVALID_PLAN,
    Reason.QUANTITY_OUT_OF_RANGE,
    Reason.ADDON_ALREADY_PRESENT,
    Reason.ADDON_NOT_FOUND,
    Reason.INVALID_RESUME_DATE,
    Reason.INVALID_TRIAL,
    Reason.TRIAL_ALREADY_USED,
    Reason.SCHEDULED_CHANGE_PENDING,
    Reason.NEVER_APPROVED,
    Reason.GRACE_PERIOD_OVER,
    Reason.NOTHING_SCHEDULED,
}


def _command_fields(kind: CommandKind, data: st.DataObject, now: datetime) -> dict[str, Any]:
    """Random (often invalid) values for the command-specific fields of ``kind``."""
    draw = data.draw
    # mostly valid values, sometimes not (guards must refuse those without changing anything)
    plan = st.sampled_from([*BASE_PLANS, *BASE_PLANS, *ADDONS]).map(lambda p: p.model_dump())
    quantity = st.sampled_from([1, 2, 5, 10, 12]) | st.integers(min_value=0, max_value=120)
    match kind:
        case CommandKind.CREATE:
            return {
                "channel": draw(st.sampled_from(["direct", "aws_marketplace"])),
                "plan": draw(plan),
                "quantity": draw(st.sampled_from([1, 5, 10, 20])),
                "billing_interval": draw(st.sampled_from(["P1W", "P1M", "P3M", "P1Y"])),
                "approval": draw(st.sampled_from(["auto", "manual"])),
                "trial_days": draw(st.none() | st.integers(min_value=0, max_value=30)),
            }
        case CommandKind.START_TRIAL:
            return {"trial_days": draw(st.integers(min_value=0, max_value=30))}
        case CommandKind.CHANGE_PLAN:
            return {
                "plan": draw(plan),
                "timing": draw(st.sampled_from(["immediate", "period_end"])),
                "quantity": draw(st.none() | quantity),
            }
        case CommandKind.CHANGE_QUANTITY:
            return {"quantity": draw(quantity)}
        case CommandKind.ADD_ADDON:
            addon = st.sampled_from([*ADDONS, *ADDONS, PRO]).map(lambda p: p.model_dump())
            return {"addon": draw(addon), "quantity": draw(st.integers(min_value=0, max_value=8))}
        case CommandKind.REMOVE_ADDON:
            return {"addon_plan_id": draw(st.sampled_from([p.plan_id for p in ADDONS]))}
        case CommandKind.PAUSE:
            offset = draw(st.none() | st.integers(min_value=-3, max_value=60))
            return {"resume_on": None if offset is None else (now + timedelta(days=offset)).date()}
        case CommandKind.CANCEL:
            return {"timing": draw(st.sampled_from(["immediate", "period_end"]))}
        case CommandKind.TERMINATE:
            return {"grace_period_days": draw(st.none() | st.integers(min_value=0, max_value=90))}
        case _:
            return {}


# Commands that end a subscription are drawn less often, so sequences live long enough to explore.
_ENDING = {CommandKind.TERMINATE, CommandKind.REJECT, CommandKind.EXPIRE}
FIRE_TIMER = "fire_timer"
# The scheduler fires a timer in about one step out of ten.
ACTIONS: list[CommandKind | str] = [
    *(k for k in CommandKind for _ in range(1 if k in _ENDING else 3)),
    *[FIRE_TIMER] * 6,
]
# Time moves forward by nothing, hours or weeks between commands.
ADVANCE_HOURS = (
    st.just(0) | st.integers(min_value=1, max_value=48) | st.integers(min_value=48, max_value=40 * 24)
)


class LifecycleMachine(RuleBasedStateMachine):
    """One subscription, a clock that only moves forward, and a scheduler holding its timers."""

    def __init__(self) -> None:
        super().__init__()
        self.config = LifecycleConfig(upcoming_charge_notice_days=5)
        self.state: SubscriptionState | None = None
        self.now = T0
        self.timers: dict[TimerKind, datetime] = {}
        self.audit: list[AuditEntry] = []
        self.decisions = 0
        self.keys = 0
        self.terminated_at: int | None = None  # number of decisions when terminated was reached

    # --- driving ---------------------------------------------------------------------------------

    def _send(self, command: Command) -> Decision | Rejection:
        before = self.state
        row = before.status if before is not None else None
        expected = lookup(row, command.command_kind, variant_of(before, command))
        result = decide(before, command, now=self.now, config=self.config)
        if isinstance(result, Rejection):
            assert result.state is before  # nothing changed
            if isinstance(expected, Deny):
                assert (result.code, result.message) == (expected.code, expected.message)
            else:
                # the table allows it: only a guard on values or time may refuse it
                assert result.code in GUARD_CODES, result
            return result
        assert not isinstance(expected, Deny), f"table refuses {row}/{command.kind} but decide accepted"
        assert self.terminated_at is None, "terminated accepted a command"
        new = result.state
        assert new.status is expected
        assert result.previous is before
        # exactly one audit entry per change, chained on statuses
        entry = result.audit
        assert (entry.from_status, entry.to_status) == (row, new.status)
        if self.audit:
            assert entry.from_status == self.audit[-1].to_status
        self.audit.append(entry)
        self.decisions += 1
        for event in result.events:
            assert (event.from_status, event.to_status) == (row, new.status)
        # the scheduler's timers stay equal to what the state needs
        for kind in result.timers_to_cancel:
            assert kind in self.timers
            del self.timers[kind]
        for timer in result.timers_to_set:
            assert timer.command == TIMER_COMMANDS[timer.kind]
            self.timers[timer.kind] = timer.due_at
        assert self.timers == timers_for(new, self.config)
        if row in ENDED_STATUSES:
            assert command.command_kind in {CommandKind.REACTIVATE, CommandKind.TERMINATE}
        self.state = new
        if new.status is Status.TERMINATED:
            self.terminated_at = self.decisions
        return result

    def _command(self, kind: CommandKind, **fields: Any) -> Command:
        self.keys += 1
        return parse_command(
            {"kind": kind.value, "subscription_id": SUB, "idempotency_key": f"k{self.keys}", **fields}
        )

    @initialize(data=st.data())
    def create(self, data: st.DataObject) -> None:
        fields = _command_fields(CommandKind.CREATE, data, self.now)
        fields["plan"] = data.draw(st.sampled_from(BASE_PLANS)).model_dump()
        fields["quantity"] = 10 if fields["plan"]["plan_id"] == "enterprise" else 1
        result = self._send(self._command(CommandKind.CREATE, **fields))
        assert isinstance(result, Decision)

    @rule(action=st.sampled_from(ACTIONS), advance=ADVANCE_HOURS, data=st.data())
    def act(self, action: CommandKind | str, advance: int, data: st.DataObject) -> None:
        """Either the scheduler fires its earliest timer, or time passes and someone sends a command."""
        if action == FIRE_TIMER:
            self._fire_next_timer()
            return
        kind = CommandKind(action)
        self.now += timedelta(hours=advance)
        fields = _command_fields(kind, data, self.now)
        actor = data.draw(st.sampled_from(["system", "ops:alice", "customer:cus-1"]))
        self._send(self._command(kind, actor=actor, reason="because", **fields))

    def _fire_next_timer(self) -> None:
        """The scheduler fires the earliest timer that sends a command (the clock moves to its due time)."""
        firing = [(d, k) for k, d in self.timers.items() if TIMER_COMMANDS[k] is not None]
        if not firing:
            return
        due, kind = min(firing)
        self.now = max(self.now, due)
        command_kind = TIMER_COMMANDS[kind]
        assert command_kind is not None
        result = self._send(self._command(command_kind, actor="system:scheduler"))
        # a due timer's command is always accepted: timers are derived from the state that accepts them
        assert isinstance(result, Decision), result

    # --- invariants ----------------------------------------------------------------------------------

    @invariant()
    def state_is_consistent(self) -> None:
        if self.state is not None:
            assert self.state.status in set(Status)
            assert invariant_violations(self.state) == []
            assert self.timers == timers_for(self.state, self.config)

    @invariant()
    def one_audit_entry_per_change(self) -> None:
        assert len(self.audit) == self.decisions

    @invariant()
    def terminated_is_final(self) -> None:
        if self.terminated_at is not None:
            assert self.state is not None and self.state.status is Status.TERMINATED
            assert self.decisions == self.terminated_at


# Runs (max_examples) come from the Hypothesis profile; only the length of a run is this test's own:
# long enough to reach renewals, dunning and termination from a fresh subscription.
LifecycleMachine.TestCase.settings = settings(stateful_step_count=50)
TestLifecycleMachine = LifecycleMachine.TestCase

_ = DEFAULT_CONFIG  # the machine uses its own notice days to exercise the config
