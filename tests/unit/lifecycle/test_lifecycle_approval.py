"""Approval policy: auto or manual, per channel, plan and account, most specific wins, date windows."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from services.lifecycle.domain import (
    ApprovalPolicy,
    approval_mode,
    deciding_rule,
    load_approval_policy,
    parse_approval_policy,
)

POLICY = parse_approval_policy(
    """
default: auto
rules:
  - channel: aws_marketplace
    mode: manual
  - plan_id: enterprise
    mode: manual
  - channel: aws_marketplace
    plan_id: starter
    mode: auto
  - account_id: acct-vip
    mode: auto
  - account_id: acct-risky
    mode: manual
  - channel: direct
    mode: manual
    until: 2025-07-01
    note: closed beta
  - channel: direct
    plan_id: pro
    mode: manual
    from: 2026-01-01
"""
)


def mode(
    channel: str = "direct", plan_id: str = "pro", account_id: str | None = "acct-1", on: str = "2025-08-01"
) -> str:
    return approval_mode(
        POLICY, channel=channel, plan_id=plan_id, account_id=account_id, on=date.fromisoformat(on)
    )


def test_default_when_no_rule_matches() -> None:
    assert mode(channel="stripe") == "auto"
    assert approval_mode(
        ApprovalPolicy(default="manual"), channel="x", plan_id="y", account_id=None, on=date(2025, 1, 1)
    ) == ("manual")


def test_channel_rule() -> None:
    assert mode(channel="aws_marketplace") == "manual"


def test_plan_rule_beats_channel_rule_and_channel_plus_plan_beats_both() -> None:
    assert mode(channel="stripe", plan_id="enterprise") == "manual"
    assert mode(channel="aws_marketplace", plan_id="starter") == "auto"  # channel+plan (3) > channel (1)


def test_account_rule_beats_everything() -> None:
    assert mode(channel="aws_marketplace", plan_id="enterprise", account_id="acct-vip") == "auto"
    assert mode(channel="stripe", account_id="acct-risky") == "manual"
    rule = deciding_rule(
        POLICY, channel="aws_marketplace", plan_id="enterprise", account_id="acct-vip", on=date(2025, 1, 1)
    )
    assert rule is not None and rule.account_id == "acct-vip"


def test_date_window_manual_during_beta_then_auto() -> None:
    assert mode(on="2025-06-30") == "manual"  # beta still on
    assert mode(on="2025-07-01") == "auto"  # `until` is exclusive: the beta ended
    assert mode(on="2026-01-01") == "manual"  # a later rule for direct+pro starts
    assert mode(plan_id="starter", on="2026-01-01") == "auto"


def test_ambiguous_rules_are_refused() -> None:
    with pytest.raises(ValidationError, match="ambiguous"):
        parse_approval_policy(
            """
rules:
  - {channel: direct, mode: manual, until: 2025-07-01}
  - {channel: direct, mode: auto, from: 2025-06-01}
"""
        )
    # back-to-back windows are fine
    ok = parse_approval_policy(
        """
rules:
  - {channel: direct, mode: manual, until: 2025-07-01}
  - {channel: direct, mode: auto, from: 2025-07-01}
"""
    )
    assert len(ok.rules) == 2


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValidationError):
        parse_approval_policy("rules: [{channel: direct, mode: sometimes}]")
    with pytest.raises(ValidationError):
        parse_approval_policy("rules: [{chanel: direct, mode: manual}]")  # typo in a key
    with pytest.raises(ValidationError, match="empty"):
        parse_approval_policy("rules: [{channel: direct, mode: manual, from: 2025-07-01, until: 2025-07-01}]")


def test_the_packaged_policy_loads() -> None:
    policy = load_approval_policy()
    assert policy.default in ("auto", "manual")
    assert approval_mode(
        policy, channel="direct", plan_id="enterprise", account_id=None, on=date(2026, 11, 21)
    ) == ("manual")
    assert parse_approval_policy("") == ApprovalPolicy()
