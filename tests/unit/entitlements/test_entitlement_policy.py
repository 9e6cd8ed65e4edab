"""The access policy: every (status, level) pair, grace periods, rule specificity, prepaid access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.entitlements.domain.entitlements import SubscriptionInputs, customer_body, subscription_body
from services.entitlements.domain.policy import (
    LEVELS,
    STATUSES,
    AccessPolicy,
    PolicyError,
    access_at,
    load_policy,
)
from shared.catalog import cached_catalog

CATALOG = cached_catalog(None)
T0 = datetime(2025, 3, 1, tzinfo=UTC)
PRO = {"api_access", "email_support", "sso", "audit_log"}


def _policy(status: str, level: str, **grace: object) -> AccessPolicy:
    default = {s: {"access": "full"} for s in STATUSES}
    default[status] = {"access": level, **grace}
    return AccessPolicy.model_validate({"default": default})


def _inputs(
    status: str, *, sub: str = "sub-1", plan: str = "pro", channel: str = "direct", **kw: object
) -> SubscriptionInputs:
    return SubscriptionInputs(
        subscription_id=sub,
        customer_id="cus-1",
        status=status,
        channel=channel,
        plan_id=plan,
        quantity=kw.pop("quantity", 1),  # type: ignore[arg-type]
        addons=(),
        status_since=T0,
        **kw,  # type: ignore[arg-type]
    )


# What each level leaves usable: (features kept, can create instances, writable, instances kept)
EXPECTED = {
    "full": (True, True, True, True),
    "held": (True, False, True, True),
    "read_only": (True, False, False, True),
    "revoked": (False, False, False, False),
}


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("level", LEVELS)
def test_every_status_under_every_level(status: str, level: str) -> None:
    body = subscription_body(CATALOG, _policy(status, level), _inputs(status), [], T0)
    features, create, writable, instances = EXPECTED[level]
    assert body["access"] == level
    assert (set(body["features"]) == PRO) is features
    assert body["can_create_instances"] is create
    assert body["writable"] is writable
    assert (body["instances"] == 5) is instances
    assert body["pending"] == []


@pytest.mark.parametrize("status", STATUSES)
def test_the_packaged_policy_names_every_status(status: str) -> None:
    policy = load_policy()
    assert (
        access_at(
            policy, status=status, channel="direct", plan="pro", status_since=T0, grace_ends_at=None, at=T0
        ).level
        in LEVELS
    )


def test_grace_days_keep_the_level_then_drop_and_the_drop_is_pending_in_advance() -> None:
    policy = _policy("past_due", "full", grace_days=7, then="held")
    inputs = _inputs("past_due")
    during = subscription_body(CATALOG, policy, inputs, [], T0 + timedelta(days=6, hours=23))
    assert during["access"] == "full"
    assert during["pending"] == [
        {"kind": "access", "effective_at": (T0 + timedelta(days=7)).isoformat(), "access": "held"}
    ]
    after = subscription_body(CATALOG, policy, inputs, [], T0 + timedelta(days=7))
    assert after["access"] == "held" and after["pending"] == []


def test_until_grace_end_uses_the_lifecycles_date() -> None:
    policy = _policy("cancelled", "read_only", until_grace_end=True, then="revoked")
    end = T0 + timedelta(days=30)
    inputs = _inputs("cancelled", grace_ends_at=end)
    assert subscription_body(CATALOG, policy, inputs, [], end - timedelta(seconds=1))["access"] == "read_only"
    assert subscription_body(CATALOG, policy, inputs, [], end)["access"] == "revoked"


def test_the_most_specific_rule_wins() -> None:
    policy = AccessPolicy.model_validate(
        {
            "default": {s: {"access": "full"} for s in STATUSES},
            "rules": [
                {"channel": "azure_marketplace", "statuses": {"suspended": {"access": "read_only"}}},
                {"plan": "pro", "statuses": {"suspended": {"access": "held"}}},
                {
                    "channel": "azure_marketplace",
                    "plan": "pro",
                    "statuses": {"suspended": {"access": "revoked"}},
                },
            ],
        }
    )
    assert policy.rule_for("suspended", channel="azure_marketplace", plan="starter").access == "read_only"
    assert policy.rule_for("suspended", channel="direct", plan="pro").access == "held"
    assert policy.rule_for("suspended", channel="azure_marketplace", plan="pro").access == "revoked"
    assert policy.rule_for("suspended", channel="direct", plan="starter").access == "full"


def test_a_policy_without_every_status_or_with_half_a_grace_is_refused() -> None:
    with pytest.raises(ValueError):
        AccessPolicy.model_validate({"default": {"active": {"access": "full"}}})
    with pytest.raises(ValueError):
        _policy("past_due", "full", grace_days=3)


def test_a_broken_policy_file_names_itself(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "p.yaml"
    bad.write_text("default: {active: {access: maybe}}\n")
    with pytest.raises(PolicyError, match=r"p\.yaml"):
        load_policy(bad)


def test_a_prepaid_subscription_keeps_full_access_while_another_is_overdue_past_its_grace() -> None:
    policy = load_policy()
    prepaid = _inputs("active", sub="sub-annual", plan="starter")
    overdue = _inputs("past_due", sub="sub-monthly", plan="pro")
    later = T0 + timedelta(days=40)
    bodies = {i.subscription_id: subscription_body(CATALOG, policy, i, [], later) for i in (prepaid, overdue)}
    assert bodies["sub-monthly"]["access"] == "held"  # its own grace is over
    assert bodies["sub-annual"]["access"] == "full"  # untouched by the other's debt
    merged = customer_body(CATALOG, "cus-1", bodies, [], later)
    assert merged["access"] == "full" and merged["can_create_instances"] is True
    assert {"api_access", "email_support"} <= set(merged["features"])
