"""Guards: commands the table allows in a status but whose values or timing are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.lifecycle.domain import (
    Decision,
    Reason,
    Rejection,
    Status,
    SubscriptionState,
    decide,
    parse_command,
)

from .builders import BACKUP, ENTERPRISE, PRO, STARTER, STORAGE, SUB, cmd, create, state_in, step

T = datetime(2024, 1, 31, 20, tzinfo=UTC)


def active_with(**changes: Any) -> SubscriptionState:
    state = state_in(Status.ACTIVE)
    assert state is not None
    return state.model_copy(update=changes)


GUARDS = [
    # (state, command kind, fields, expected reason)
    ("active", "change_plan", {"plan": PRO.model_dump()}, Reason.NO_CHANGE),
    ("active", "change_plan", {"plan": STORAGE.model_dump()}, Reason.INVALID_PLAN),
    ("active", "change_plan", {"plan": ENTERPRISE.model_dump()}, Reason.QUANTITY_OUT_OF_RANGE),  # min 10
    ("active", "change_plan", {"plan": STARTER.model_dump(), "quantity": 11}, Reason.QUANTITY_OUT_OF_RANGE),
    ("active", "change_quantity", {"quantity": 1}, Reason.NO_CHANGE),
    ("active", "change_quantity", {"quantity": 0}, Reason.QUANTITY_OUT_OF_RANGE),
    ("active", "change_quantity", {"quantity": 101}, Reason.QUANTITY_OUT_OF_RANGE),
    ("active", "add_addon", {"addon": PRO.model_dump()}, Reason.INVALID_PLAN),
    ("active", "add_addon", {"addon": BACKUP.model_dump(), "quantity": 6}, Reason.QUANTITY_OUT_OF_RANGE),
    ("active", "remove_addon", {"addon_plan_id": "backup"}, Reason.ADDON_NOT_FOUND),
    ("active", "pause", {"resume_on": "2024-01-31"}, Reason.INVALID_RESUME_DATE),
    ("active", "start_trial", {"trial_days": 0}, Reason.INVALID_TRIAL),
    ("active", "renew", {}, Reason.NOT_DUE),
    ("active", "undo_scheduled_change", {}, Reason.NOTHING_SCHEDULED),
    ("trial", "expire", {}, Reason.NOT_DUE),
    ("trial", "start_trial", {"trial_days": 3}, Reason.ALREADY_IN_STATE),
]


@pytest.mark.parametrize(
    ("status", "kind", "fields", "reason"), GUARDS, ids=[f"{g[0]}-{g[1]}-{g[3]}" for g in GUARDS]
)
def test_guard_refuses_and_changes_nothing(
    status: str, kind: str, fields: dict[str, Any], reason: Reason
) -> None:
    state = state_in(Status(status))
    assert state is not None
    before = state.model_dump()
    result = decide(state, cmd(kind, **fields), now=T)
    assert isinstance(result, Rejection), result
    assert result.code is reason and result.message
    assert result.state is state and state.model_dump() == before


def test_create_refuses_an_add_on_or_a_bad_quantity() -> None:
    assert (
        isinstance(r := decide(None, create(plan=STORAGE), now=T), Rejection)
        and r.code is Reason.INVALID_PLAN
    )
    r2 = decide(None, create(plan=ENTERPRISE, quantity=2, trial_days=None), now=T)
    assert isinstance(r2, Rejection) and r2.code is Reason.QUANTITY_OUT_OF_RANGE


def test_the_same_scheduled_change_twice_is_no_change() -> None:
    state = step(
        state_in(Status.ACTIVE), cmd("change_plan", plan=STARTER.model_dump(), timing="period_end"), T
    )
    again = decide(state, cmd("change_plan", plan=STARTER.model_dump(), timing="period_end"), now=T)
    assert isinstance(again, Rejection) and again.code is Reason.NO_CHANGE
    other = decide(
        state, cmd("change_plan", plan=STARTER.model_dump(), timing="period_end", quantity=2), now=T
    )
    assert isinstance(other, Decision)  # a different scheduled change replaces it
    assert other.state.scheduled_change is not None and other.state.scheduled_change.quantity == 2


def test_start_trial_with_a_scheduled_change_is_refused() -> None:
    state = step(
        state_in(Status.ACTIVE), cmd("change_plan", plan=STARTER.model_dump(), timing="period_end"), T
    )
    r = decide(state, cmd("start_trial", trial_days=5), now=T + timedelta(hours=1))
    assert isinstance(r, Rejection) and r.code is Reason.SCHEDULED_CHANGE_PENDING


def test_quantity_must_fit_a_scheduled_plan_that_keeps_it() -> None:
    state = step(
        state_in(Status.ACTIVE), cmd("change_plan", plan=STARTER.model_dump(), timing="period_end"), T
    )
    r = decide(state, cmd("change_quantity", quantity=50), now=T + timedelta(hours=1))
    assert isinstance(r, Rejection) and r.code is Reason.QUANTITY_OUT_OF_RANGE and "scheduled" in r.message
    ok = decide(state, cmd("change_quantity", quantity=8), now=T + timedelta(hours=1))
    assert isinstance(ok, Decision)


def test_decide_insists_on_aware_now_and_the_right_subscription() -> None:
    state = state_in(Status.ACTIVE)
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(state, cmd("suspend"), now=datetime(2024, 2, 1))
    other = parse_command({"kind": "suspend", "subscription_id": "sub-2", "idempotency_key": "x"})
    with pytest.raises(ValueError, match="sub-2"):
        decide(state, other, now=T)


def test_commands_are_validated_and_carry_an_idempotency_key() -> None:
    c = parse_command(
        {"kind": "pause", "subscription_id": SUB, "idempotency_key": "abc", "resume_on": "2024-05-01"}
    )
    assert c.idempotency_key == "abc" and c.kind == "pause"
    with pytest.raises(ValueError):
        parse_command({"kind": "pause", "subscription_id": SUB})  # no idempotency key
    with pytest.raises(ValueError):
        parse_command({"kind": "teleport", "subscription_id": SUB, "idempotency_key": "k"})
    with pytest.raises(ValueError):
        parse_command({"kind": "cancel", "subscription_id": SUB, "idempotency_key": "k", "timing": "someday"})
    with pytest.raises(ValueError):  # naive times are refused
        parse_command(
            {
                "kind": "renew",
                "subscription_id": SUB,
                "idempotency_key": "k",
                "effective_at": "2024-01-01T00:00:00",
            }
        )
