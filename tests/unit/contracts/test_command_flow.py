"""A sender that builds a command the receiver cannot honour fails here, not in production.

Every command intake's pipeline can send, with every timing it sends it with, goes the whole way
without I/O: canonical order change -> ``command_for`` (intake) -> ``SubscriptionCommand`` as JSON
on the wire -> ``decode_command`` + ``decide`` (lifecycle). The test asserts that the timing and
every parameter of the typed command arrive in the lifecycle's decision.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from services.intake.domain.policy import EffectivePolicy, effective_policy
from services.intake.pipeline import COMMANDS, command_for
from services.lifecycle.domain import (
    VARIANTS,
    CommandKind,
    Decision,
    ScheduledPlanChange,
    Status,
    SubscriptionState,
    decide,
    load_approval_policy,
)
from services.lifecycle.domain.decode import commercial_terms, decode_command
from shared.catalog import load_catalog
from shared.contracts import commands as wire
from shared.contracts import events as ev
from shared.contracts.canonical import CanonicalOrderChange
from shared.contracts.commands import CommandParams, Timing

CATALOG = load_catalog()
APPROVAL = load_approval_policy()
SUB = "sub-flow"
START = datetime(2025, 3, 1, 10, tzinfo=UTC)
LATER = datetime(2025, 3, 11, 12, tzinfo=UTC)


def change(action: str, phase: str, channel: str = "stripe", **fields: Any) -> CanonicalOrderChange:
    return CanonicalOrderChange.model_validate(
        {
            "action": action,
            "phase": phase,
            "channel": channel,
            "channel_subscription_id": "ch-1",
            "status_after": None,
            **fields,
        }
    )


def policy(channel: str = "stripe") -> EffectivePolicy:
    return effective_policy(channel, None)


def over_the_wire(params: CommandParams, *, at: datetime, key: str) -> ev.SubscriptionCommand:
    """The command as the lifecycle receives it: serialized by the sender, parsed by the receiver."""
    sent = ev.SubscriptionCommand(
        subscription_id=SUB,
        idempotency_key=key,
        channel="stripe",
        effective_at=at,
        actor="channel:stripe",
        params=params,
    )
    return ev.SubscriptionCommand.model_validate_json(sent.model_dump_json())


def lifecycle(state: SubscriptionState | None, cmd: ev.SubscriptionCommand) -> Decision:
    domain = decode_command(cmd, state, catalog=CATALOG, approval_policy=APPROVAL)
    result = decide(state, domain, now=cmd.effective_at)
    assert isinstance(result, Decision), result
    return result


def active(plan: str = "starter", quantity: int = 3) -> SubscriptionState:
    params = command_for(
        change("create", "effective", plan=plan, quantity=quantity), policy(), plan_id=plan, catalog=CATALOG
    )
    assert params is not None
    state = lifecycle(None, over_the_wire(params, at=START, key="create")).state
    assert state.status is Status.ACTIVE
    return state


def via_intake(action: str, phase: str, *, plan_id: str | None = None, **fields: Any) -> CommandParams:
    params = command_for(change(action, phase, **fields), policy(), plan_id=plan_id, catalog=CATALOG)
    assert params is not None
    return params


# --------------------------------------------------------------------------- every command intake sends


def test_create_carries_plan_quantity_interval_trial_and_commercial_terms() -> None:
    params = via_intake(
        "create",
        "effective",
        plan_id="pro",
        plan="pro",
        quantity=4,
        billing_interval="P1Y",
        currency="EUR",
        unit_amount="49.00",
        trial=True,
        test=True,
    )
    assert isinstance(params, wire.CreateParams)
    customer = ev.Customer(customer_id="cus-1", account_id="acct-1", country="DE")
    params = params.model_copy(update={"customer": customer, "clock": "clock-1"})
    cmd = over_the_wire(params, at=START, key="create")
    decision = lifecycle(None, cmd)
    state = decision.state
    assert (state.plan.plan_id, state.quantity, state.billing_interval) == ("pro", 4, "P1Y")
    assert (state.customer_id, state.account_id, state.channel) == ("cus-1", "acct-1", "stripe")
    assert state.status is Status.TRIAL and state.had_trial  # trial=True: the plan's trial
    assert commercial_terms(cmd) == {
        "customer": customer.model_dump(mode="json"),
        "currency": "EUR",
        "unit_amount": "49.00",
        "test": True,
        "clock": "clock-1",
    }
    assert Decimal(commercial_terms(cmd)["unit_amount"]) == Decimal("49.00")


def test_manual_approval_from_the_channel_policy_arrives() -> None:
    params = via_intake("create", "effective", plan_id="starter", quantity=2).model_copy(
        update={"approval": "manual"}
    )
    pending = lifecycle(None, over_the_wire(params, at=START, key="create")).state
    assert pending.status is Status.PENDING_APPROVAL
    approved = lifecycle(pending, over_the_wire(via_intake("activate", "effective"), at=LATER, key="approve"))
    assert approved.state.status is Status.ACTIVE
    rejected = lifecycle(
        pending, over_the_wire(via_intake("create_failed", "failed"), at=LATER, key="reject")
    )
    assert rejected.state.status is Status.TERMINATED


@pytest.mark.parametrize(
    ("phase", "timing"),
    [("effective", Timing.IMMEDIATE), ("requested", Timing.IMMEDIATE), ("scheduled", Timing.PERIOD_END)],
)
def test_change_plan_timing_plan_and_quantity_arrive(phase: str, timing: Timing) -> None:
    state = active("starter", 3)
    params = via_intake("change_plan", phase, plan_id="pro", plan="pro", quantity=5)
    decision = lifecycle(state, over_the_wire(params, at=LATER, key=f"plan-{phase}"))
    assert decision.command.timing is timing  # type: ignore[union-attr]
    if timing is Timing.IMMEDIATE:
        assert (decision.state.plan.plan_id, decision.state.quantity) == ("pro", 5)
        assert decision.events[-1].timing is Timing.IMMEDIATE  # type: ignore[attr-defined]
    else:
        assert (decision.state.plan.plan_id, decision.state.quantity) == ("starter", 3)
        sched = decision.state.scheduled_change
        assert isinstance(sched, ScheduledPlanChange)
        assert (sched.plan.plan_id, sched.quantity, sched.effective_on) == (
            "pro",
            5,
            state.current_period_end,
        )


@pytest.mark.parametrize(
    ("phase", "timing"),
    [("effective", Timing.IMMEDIATE), ("requested", Timing.IMMEDIATE), ("scheduled", Timing.PERIOD_END)],
)
def test_change_quantity_timing_and_quantity_arrive(phase: str, timing: Timing) -> None:
    state = active("starter", 3)
    params = via_intake("change_quantity", phase, quantity=7)
    decision = lifecycle(state, over_the_wire(params, at=LATER, key=f"qty-{phase}"))
    assert decision.command.timing is timing  # type: ignore[union-attr]
    if timing is Timing.IMMEDIATE:
        assert decision.state.quantity == 7 and decision.state.scheduled_change is None
        return
    # the seat change waits for the period end, then the renewal applies it
    assert decision.state.quantity == 3
    sched = decision.state.scheduled_change
    assert sched is not None and (sched.plan.plan_id, sched.quantity) == ("starter", 7)
    assert state.current_period_end is not None
    renew_at = datetime.combine(state.current_period_end, datetime.min.time(), tzinfo=UTC)
    renewed = lifecycle(
        decision.state, over_the_wire(via_intake("renew", "effective"), at=renew_at, key="renew")
    )
    assert renewed.state.quantity == 7 and renewed.state.scheduled_change is None
    assert [e.type for e in renewed.events] == ["QuantityChanged", "SubscriptionRenewed"]
    assert renewed.events[0].timing is Timing.PERIOD_END  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("phase", "timing", "status"),
    [
        ("effective", Timing.IMMEDIATE, Status.CANCELLED),
        ("scheduled", Timing.PERIOD_END, Status.NON_RENEWING),
        ("requested", Timing.PERIOD_END, Status.NON_RENEWING),
    ],
)
def test_cancel_timing_arrives(phase: str, timing: Timing, status: Status) -> None:
    decision = lifecycle(
        active(), over_the_wire(via_intake("cancel", phase), at=LATER, key=f"cancel-{phase}")
    )
    assert decision.command.timing is timing  # type: ignore[union-attr]
    assert decision.state.status is status
    if status is Status.NON_RENEWING:
        for action, phase_ in (("cancel", "withdrawn"), ("uncancel", "effective")):
            undo = over_the_wire(via_intake(action, phase_), at=LATER, key=f"undo-{action}")
            assert lifecycle(decision.state, undo).state.status is Status.ACTIVE


def test_suspend_and_reinstate_arrive() -> None:
    suspended = lifecycle(
        active(), over_the_wire(via_intake("suspend", "effective"), at=LATER, key="s")
    ).state
    assert suspended.status is Status.SUSPENDED
    back = lifecycle(suspended, over_the_wire(via_intake("reinstate", "effective"), at=LATER, key="r")).state
    assert back.status is Status.ACTIVE


# --------------------------------------------------------------------------- coverage of the mapping


def test_every_timing_the_lifecycle_distinguishes_is_sent_by_intake() -> None:
    sent = {(cmd, timing) for mapped in COMMANDS.values() if mapped for cmd, timing in [mapped] if timing}
    for kind in (CommandKind.CHANGE_PLAN, CommandKind.CHANGE_QUANTITY, CommandKind.CANCEL):
        assert {Timing(v) for v in VARIANTS[kind]} == {t for c, t in sent if c == kind.value}, kind


def test_every_intake_mapping_builds_a_valid_command() -> None:
    for (action, phase), mapped in COMMANDS.items():
        built = command_for(
            change(action, phase, plan="pro", quantity=2), policy(), plan_id="pro", catalog=CATALOG
        )
        assert (built.command if built else None) == (mapped[0] if mapped else None), (action, phase)
        if mapped and mapped[1] is not None:
            assert built is not None and built.timing is mapped[1]  # type: ignore[union-attr]


def test_a_plan_change_without_a_plan_is_refused_by_intake() -> None:
    with pytest.raises(ValidationError):
        command_for(change("change_plan", "effective"), policy(), plan_id=None, catalog=CATALOG)


def test_a_typo_fails_validation() -> None:
    with pytest.raises(ValidationError):
        wire.params_for("cancel", timng="immediate")
    with pytest.raises(ValidationError):
        wire.params_for("cancel", timing="at_the_end")
    with pytest.raises(ValidationError):
        ev.SubscriptionCommand.model_validate(
            {
                "subscription_id": SUB,
                "idempotency_key": "k",
                "channel": "direct",
                "effective_at": START.isoformat(),
                "params": {"command": "cancel"},
                "parms": {},
            }
        )


def test_every_command_of_the_lifecycle_table_has_a_wire_model() -> None:
    names = {m.model_fields["command"].default for m in get_args(get_args(CommandParams)[0])}
    assert {k.value for k in CommandKind} <= names
    assert names - {k.value for k in CommandKind} == set(wire.NOTICE_COMMANDS)


def test_old_end_of_term_is_read_as_period_end_in_input_files() -> None:
    from pydantic import TypeAdapter

    assert TypeAdapter(wire.TimingInput).validate_python("end_of_term") is Timing.PERIOD_END
    with pytest.raises(ValidationError):  # on the wire there is one name
        wire.params_for("cancel", timing="end_of_term")
