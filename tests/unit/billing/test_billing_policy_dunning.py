"""Plan-change policy from configuration, and the dunning schedule."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.billing.domain.dunning import (
    EXHAUSTED,
    lifecycle_effect,
    next_retry,
    payment_method_updated,
    record_failure,
    record_success,
)
from services.billing.domain.policy import (
    BillingPolicy,
    DunningPolicy,
    PolicyError,
    classify_plan_change,
    load_billing_policy,
    plan_change_rule,
)
from shared.catalog import load_catalog

CATALOG = load_catalog()
POLICY = load_billing_policy()


def test_plan_change_classes_by_tier() -> None:
    assert classify_plan_change(CATALOG, "starter", "pro") == "upgrade"
    assert classify_plan_change(CATALOG, "enterprise", "pro") == "downgrade"
    assert classify_plan_change(CATALOG, "pro", "pro") == "sidegrade"


def test_rules_pairs_first_then_class_then_command_override() -> None:
    assert plan_change_rule(POLICY, CATALOG, "starter", "pro").timing == "immediate"
    assert plan_change_rule(POLICY, CATALOG, "pro", "starter").timing == "period_end"
    pair = plan_change_rule(POLICY, CATALOG, "starter", "enterprise")
    assert (pair.timing, pair.invoicing) == ("immediate", "invoice_immediately")
    forced = plan_change_rule(
        POLICY, CATALOG, "pro", "starter", timing="immediate", invoicing="invoice_immediately"
    )
    assert (forced.timing, forced.invoicing) == ("immediate", "invoice_immediately")


def test_policy_file_is_validated(tmp_path: Path) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text(
        "plan_change:\n  pairs:\n    - {from: '*', to: starter, timing: period_end}\n"
        "  sidegrade: {timing: period_end, invoicing: invoice_immediately}\n"
    )
    policy = load_billing_policy(p)
    assert plan_change_rule(policy, CATALOG, "enterprise", "starter").timing == "period_end"
    assert plan_change_rule(policy, CATALOG, "pro", "pro").invoicing == "invoice_immediately"
    assert policy.dunning == DunningPolicy()  # defaults for what the file omits
    p.write_text("plan_change: {upgrade: {timing: sometimes}}\n")
    with pytest.raises(PolicyError):
        load_billing_policy(p)
    p.write_text("surprise: true\n")
    with pytest.raises(PolicyError):
        load_billing_policy(p)
    assert isinstance(POLICY, BillingPolicy) and POLICY.payment_terms.allowed_days == (0, 30, 60)


def test_dunning_schedule_1_3_7_days() -> None:
    """Failure on Mar 1: retry Mar 2 (+1); fails -> Mar 5 (+3); fails -> Mar 12 (+7); fails -> exhausted.

    Effects: past_due on the first failure, suspended when exhausted.
    """
    d = POLICY.dunning
    first = record_failure(d, None, date(2025, 3, 1))
    assert (first.retry_on, first.lifecycle_effect) == (date(2025, 3, 2), "past_due")
    second = record_failure(d, first.state, date(2025, 3, 2))
    assert (second.retry_on, second.lifecycle_effect) == (date(2025, 3, 5), None)
    third = record_failure(d, second.state, date(2025, 3, 5))
    assert third.retry_on == date(2025, 3, 12)
    last = record_failure(d, third.state, date(2025, 3, 12))
    assert last.retry_on is None and last.lifecycle_effect == "suspended"
    assert last.state is not None and last.state.exhausted
    # A new card: retry at once, even after exhaustion.
    updated = payment_method_updated(last.state, date(2025, 3, 20))
    assert updated.retry_on == date(2025, 3, 20)
    assert record_success(updated.state).lifecycle_effect == "active"


def test_dunning_since_first_failure() -> None:
    d = DunningPolicy(retry_after_days=(1, 3, 7), basis="since_first_failure")
    assert next_retry(d, 2, date(2025, 3, 2), first_failed_on=date(2025, 3, 1)) == date(2025, 3, 4)
    assert next_retry(d, 3, date(2025, 3, 4), first_failed_on=date(2025, 3, 1)) == date(2025, 3, 8)
    assert next_retry(d, 4, date(2025, 3, 8), first_failed_on=date(2025, 3, 1)) == EXHAUSTED
    with pytest.raises(ValueError):
        next_retry(d, 0, date(2025, 3, 1))


def test_empty_schedule_suspends_at_once() -> None:
    d = DunningPolicy(retry_after_days=())
    decision = record_failure(d, None, date(2025, 3, 1))
    assert decision.retry_on is None and decision.lifecycle_effect == "suspended"


@given(delays=st.lists(st.integers(0, 30), max_size=6), failed_on=st.dates(), count=st.integers(1, 10))
def test_retries_follow_the_schedule_then_exhaust(delays: list[int], failed_on: date, count: int) -> None:
    d = DunningPolicy(retry_after_days=tuple(delays))
    result = next_retry(d, count, failed_on) if failed_on < date(9999, 12, 1) else None
    if result is None:
        return
    if count > len(delays):
        assert result == EXHAUSTED and lifecycle_effect(d, count) == "suspended"
    else:
        assert result == failed_on + timedelta(days=delays[count - 1])
        assert lifecycle_effect(d, count) == ("past_due" if count == 1 else None)
