"""Feature model, customer merge, overrides, pending changes, history as-of, and gap-detecting consumers."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.entitlements.domain.consumer import GapDetectingConsumer, VersionedSet
from services.entitlements.domain.entitlements import (
    Override,
    SubscriptionInputs,
    as_of,
    customer_body,
    granted,
    next_boundary,
    scheduled_after,
    subscription_body,
)
from services.entitlements.domain.entitlements import PendingChange as PendingChangeAlias
from services.entitlements.domain.policy import load_policy
from shared.catalog import Catalog, cached_catalog
from shared.contracts import subscription as sc

CATALOG = cached_catalog(None)
POLICY = load_policy()
T0 = datetime(2025, 3, 1, tzinfo=UTC)
PLANS = ("starter", "pro", "enterprise")
STATUSES = ("active", "trial", "past_due", "paused", "suspended", "cancelled", "terminated")


def _inputs(
    sub: str, plan: str, status: str = "active", quantity: int = 1, addons: int = 0
) -> SubscriptionInputs:
    return SubscriptionInputs(
        subscription_id=sub,
        customer_id="cus-1",
        status=status,
        channel="direct",
        plan_id=plan,
        quantity=quantity,
        addons=(("extra-storage", addons),) if addons else (),
        status_since=T0,
    )


def test_per_seat_limits_scale_with_quantity_and_others_do_not() -> None:
    _, limits, instances = granted(CATALOG, plan_id="pro", quantity=3, addons=[])
    assert limits["storage_gb"] == 750  # pro marks storage_gb per seat
    assert limits["projects"] == 25 and instances == 5


def test_repeated_add_ons_stack() -> None:
    _, limits, _ = granted(CATALOG, plan_id="starter", quantity=1, addons=[("extra-storage", 3)])
    assert limits["storage_gb"] == 10 + 300


def test_customer_merge_ors_booleans_sums_or_maxes_limits_by_rule() -> None:
    bodies = {
        s.subscription_id: subscription_body(CATALOG, POLICY, s, [], T0)
        for s in (_inputs("a", "starter"), _inputs("b", "pro", quantity=2))
    }
    merged = customer_body(CATALOG, "cus-1", bodies, [], T0)
    assert set(merged["features"]) == {"api_access", "email_support", "sso", "audit_log"}
    assert merged["limits"]["storage_gb"] == 10 + 500  # sum
    assert merged["limits"]["projects"] == 25  # max
    assert merged["limits"]["api_calls_per_day"] == 10000 + 250000  # metered, sum
    assert merged["instances"] == 6 and merged["subscriptions"] == ["a", "b"]


def test_metered_features_need_a_period() -> None:
    with pytest.raises(ValueError):
        Catalog.model_validate(
            {"features": {"calls": {"kind": "metered"}}, "plans": []},
        )


def test_an_override_applies_only_in_its_window_and_never_lowers_a_limit() -> None:
    end = T0 + timedelta(days=7)
    grants = [
        Override("o1", "cus-1", None, "priority_support", None, T0, end, "comp", "user:ops"),
        Override("o2", "cus-1", None, "projects", 2, T0, end, "lower?", "user:ops"),
        Override("o3", "cus-1", "a", "storage_gb", 5000, T0 + timedelta(days=1), end, "trial", "user:ops"),
    ]
    sub = _inputs("a", "pro")
    at_start = subscription_body(CATALOG, POLICY, sub, grants, T0)
    assert at_start["limits"]["storage_gb"] == 250 and at_start["overrides"] == []
    assert [p["kind"] for p in at_start["pending"]] == ["override_start", "override_end"]
    during = subscription_body(CATALOG, POLICY, sub, grants, T0 + timedelta(days=2))
    assert during["limits"]["storage_gb"] == 5000 and during["overrides"] == ["o3"]
    merged = customer_body(CATALOG, "cus-1", {"a": during}, grants, T0 + timedelta(days=2))
    assert "priority_support" in merged["features"] and merged["limits"]["projects"] == 25
    assert merged["overrides"] == ["o1", "o2"]
    after = customer_body(
        CATALOG, "cus-1", {"a": subscription_body(CATALOG, POLICY, sub, grants, end)}, grants, end
    )
    assert "priority_support" not in after["features"] and after["limits"]["storage_gb"] == 250


def test_a_period_end_downgrade_is_pending_until_it_applies() -> None:
    common: dict[str, Any] = {
        "subscription_id": "a",
        "idempotency_key": "k",
        "from_status": "active",
        "to_status": "active",
        "effective_at": T0,
        "actor": "user:x",
    }
    scheduled = sc.PlanChangeScheduled(
        command="change_plan",
        from_plan_id="pro",
        from_tier=2,
        to_plan_id="starter",
        to_tier=1,
        direction="downgrade",
        from_quantity=1,
        to_quantity=None,
        effective_on=date(2025, 4, 1),
        **common,
    )
    pending = scheduled_after((), [scheduled])
    body = subscription_body(CATALOG, POLICY, replace(_inputs("a", "pro"), scheduled=pending), [], T0)
    assert body["pending"] == [
        {
            "kind": "plan_change",
            "effective_at": "2025-04-01T00:00:00+00:00",
            "to_plan_id": "starter",
            "to_quantity": None,
            "direction": "downgrade",
        }
    ]
    assert next_boundary([body]) == datetime(2025, 4, 1, tzinfo=UTC)
    dropped = sc.ScheduledPlanChangeDropped(
        command="undo_scheduled_change", plan_id="pro", quantity=None, effective_on=date(2025, 4, 1), **common
    )
    assert scheduled_after(pending, [dropped]) == ()


changes = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=400),  # hours after T0 (non-decreasing after sorting)
        st.sampled_from(["a", "b"]),
        st.sampled_from(PLANS),
        st.sampled_from(STATUSES),
        st.integers(min_value=1, max_value=12),
    ),
    min_size=1,
    max_size=12,
)


def _replay(events: list[tuple[int, str, str, str, int]]) -> dict[str, Any] | None:
    """A fresh fold of the events: the customer's set after the last of them."""
    if not events:
        return None
    state: dict[str, SubscriptionInputs] = {}
    for _hours, sub, plan, status, qty in events:
        state[sub] = _inputs(sub, plan, status, quantity=qty)
    at = T0 + timedelta(hours=events[-1][0])
    bodies = {s: subscription_body(CATALOG, POLICY, i, [], at) for s, i in state.items()}
    return customer_body(CATALOG, "cus-1", bodies, [], at)


@given(changes, st.integers(min_value=-5, max_value=420))
def test_history_as_of_equals_a_fresh_replay_up_to_that_instant(raw: list[Any], probe: int) -> None:
    events = sorted(raw, key=lambda e: e[0])
    history: list[tuple[datetime, int, dict[str, Any]]] = []
    for n in range(1, len(events) + 1):  # the worker: one recompute per change, appended when it differs
        body = _replay(events[:n])
        assert body is not None
        if not history or history[-1][2] != body:
            history.append((T0 + timedelta(hours=events[n - 1][0]), len(history) + 1, body))
    at = T0 + timedelta(hours=probe)
    assert as_of(history, at) == _replay([e for e in events if T0 + timedelta(hours=e[0]) <= at])


@given(
    st.lists(st.sampled_from(PLANS), min_size=1, max_size=5),
    st.randoms(use_true_random=False),
)
def test_the_customer_merge_does_not_depend_on_subscription_order(
    plans: list[str], rnd: random.Random
) -> None:
    subs = [_inputs(f"s{i}", p) for i, p in enumerate(plans)]
    bodies = {s.subscription_id: subscription_body(CATALOG, POLICY, s, [], T0) for s in subs}
    shuffled = list(bodies.items())
    rnd.shuffle(shuffled)
    merged = customer_body(CATALOG, "cus-1", bodies, [], T0)
    assert merged == customer_body(CATALOG, "cus-1", dict(shuffled), [], T0)
    for b in bodies.values():
        assert set(b["features"]) <= set(merged["features"])
        for name, value in b["limits"].items():
            assert merged["limits"][name] >= value


@given(
    st.integers(min_value=1, max_value=15),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=14), st.sampled_from(["drop", "dup", "swap", "keep"]))
    ),
)
def test_a_gap_detecting_consumer_converges_under_drops_reorders_and_duplicates(
    n: int, disturbances: list[tuple[int, str]]
) -> None:
    truth = [VersionedSet(v, v - 1, {"v": v}) for v in range(1, n + 1)]
    stream = list(truth)
    for index, what in disturbances:
        if not stream:
            break
        i = index % len(stream)
        if what == "drop" and stream[i] is not truth[-1]:
            stream.pop(i)  # the latest is re-published until acknowledged: it arrives at least once
        elif what == "dup":
            stream.insert(i, stream[i])
        elif what == "swap" and i + 1 < len(stream):
            stream[i], stream[i + 1] = stream[i + 1], stream[i]
    if truth[-1] not in stream:
        stream.append(truth[-1])
    consumer = GapDetectingConsumer(request_snapshot=lambda: truth[-1])
    for event in stream:
        consumer.receive(event)
    assert consumer.version == n and consumer.body == {"v": n}


@pytest.mark.parametrize("role", ["owner", "admin", "editor", "reader"])
@pytest.mark.parametrize("level", ["full", "held", "read_only", "revoked"])
def test_a_role_never_gives_more_than_the_subscription_or_the_role_allows(role: str, level: str) -> None:
    from services.entitlements.domain.entitlements import LEVELS as ORDER
    from services.entitlements.domain.entitlements import ROLE_CAP, capped

    body = {"access": level, "can_create_instances": level == "full", "writable": level in ("full", "held")}
    out = capped(body, role)
    assert ORDER.index(out["access"]) == min(ORDER.index(level), ORDER.index(ROLE_CAP[role]))
    assert out["can_create_instances"] is (out["access"] == "full")
    assert out["writable"] is (out["access"] in ("full", "held"))


def _versioned(pricing: str) -> Catalog:
    raw = CATALOG.model_dump(mode="json")
    raw["renewal_pricing"] = pricing
    for plan in raw["plans"]:
        if plan["id"] == "starter":
            plan["grant_versions"] = [
                {"effective_from": "2025-06-01", "features": ["api_access", "email_support", "sso"]}
            ]
    return Catalog.model_validate(raw)


@pytest.mark.parametrize(("pricing", "old_gets_sso"), [("grandfathered", False), ("current", True)])
def test_a_dated_catalog_edit_reaches_old_subscriptions_unless_grandfathered(
    pricing: str, old_gets_sso: bool
) -> None:
    catalog = _versioned(pricing)
    old = replace(_inputs("old", "starter"), started_at=T0)
    new = replace(_inputs("new", "starter"), started_at=datetime(2025, 7, 1, tzinfo=UTC))
    july = datetime(2025, 7, 2, tzinfo=UTC)
    assert ("sso" in subscription_body(catalog, POLICY, old, [], july)["features"]) is old_gets_sso
    assert "sso" in subscription_body(catalog, POLICY, new, [], july)["features"]
    assert "sso" not in subscription_body(catalog, POLICY, old, [], T0)["features"]  # before the edit


def test_inputs_survive_their_json_form() -> None:
    full = replace(
        _inputs("a", "pro", addons=2),
        grace_ends_at=T0,
        clock="c",
        current_period_start=date(2025, 3, 1),
        started_at=T0,
        scheduled=(PendingChangeAlias("plan_change", T0, {"to_plan_id": "starter"}),),
    )
    assert SubscriptionInputs.from_json(full.as_json()) == full
