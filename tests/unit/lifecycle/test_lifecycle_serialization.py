"""What the worker stores and publishes survives JSON; catalog plans map onto PlanRef."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from services.lifecycle.domain import (
    Decision,
    Rejection,
    SubscriptionState,
    decide,
    parse_command,
    plan_ref,
)
from shared.catalog import load_catalog

from .builders import STARTER, STORAGE, cmd, create, step


def test_state_round_trips_through_json() -> None:
    t = datetime(2024, 1, 31, 9, tzinfo=UTC)
    state = step(None, create(), t)
    state = step(state, cmd("add_addon", addon=STORAGE.model_dump(), quantity=2), t + timedelta(hours=1))
    state = step(
        state, cmd("change_plan", plan=STARTER.model_dump(), timing="period_end"), t + timedelta(hours=2)
    )
    state = step(state, cmd("pause", resume_on="2024-03-01"), t + timedelta(hours=3))
    stored = json.dumps(state.model_dump(mode="json"))
    assert SubscriptionState.model_validate(json.loads(stored)) == state


def test_decision_and_rejection_serialize_with_event_details() -> None:
    t = datetime(2024, 1, 31, 9, tzinfo=UTC)
    decision = decide(None, create(), now=t)
    assert isinstance(decision, Decision)
    data = json.loads(decision.model_dump_json())
    assert [e["type"] for e in data["events"]] == ["SubscriptionCreated", "SubscriptionActivated"]
    assert data["events"][1]["period_end"] == "2024-02-29"  # subclass fields are kept
    assert data["audit"]["to_status"] == "active" and data["audit"]["from_status"] is None
    assert {t["kind"] for t in data["timers_to_set"]} == {"renewal_due", "upcoming_charge_notice"}
    # the command inside survives too (discriminated by kind)
    assert parse_command(data["command"]) == decision.command

    rejection = decide(decision.state, cmd("resume"), now=t)
    assert isinstance(rejection, Rejection)
    rdata = json.loads(rejection.model_dump_json())
    assert (rdata["code"], rdata["state"]["status"]) == ("ALREADY_IN_STATE", "active")


def test_plan_ref_from_the_catalog() -> None:
    catalog = load_catalog()
    for plan in catalog.plans:
        ref = plan_ref(plan)
        assert (ref.plan_id, ref.tier, ref.kind, ref.trial_days) == (
            plan.id,
            plan.tier,
            plan.kind,
            plan.trial_days,
        )
        assert (ref.min_quantity, ref.max_quantity) == (plan.quantity.min, plan.quantity.max)
