"""The console's pure rules: role ranks, passwords, tokens, and the actions offered per status."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.lifecycle.domain.model import CommandKind, Status
from services.lifecycle.domain.table import allowed_targets, lookup
from shared.operators import ROLES, session_hash
from som.console.app import SUBSCRIPTION_ACTIONS, allowed_actions
from som.console.security import (
    ACTION_ROLES,
    hash_password,
    may,
    new_token,
    same_token,
    verify_password,
)


def test_roles_are_ordered_and_each_higher_role_may_more() -> None:
    allowed = {role: {a for a in ACTION_ROLES if may(role, a)} for role in ROLES}
    assert allowed["viewer"] == set()
    assert allowed["viewer"] < allowed["operator"] < allowed["approver"] < allowed["admin"]
    assert allowed["admin"] == set(ACTION_ROLES)
    assert may("approver", "approve") and not may("operator", "approve")
    assert may("admin", "terminate") and not may("approver", "terminate")


@given(role=st.text(max_size=12), action=st.text(max_size=20))
def test_unknown_roles_and_actions_are_never_allowed(role: str, action: str) -> None:
    if role not in ROLES or action not in ACTION_ROLES:
        assert not may(role, action)


def test_every_subscription_action_needs_a_role() -> None:
    assert set(SUBSCRIPTION_ACTIONS) <= set(ACTION_ROLES)


def test_password_hashes_verify_only_the_password() -> None:
    h = hash_password("s3cret-enough")
    assert h.startswith("$argon2id$") and "s3cret" not in h
    assert verify_password(h, "s3cret-enough")
    assert not verify_password(h, "s3cret-enougH")
    assert not verify_password(None, "s3cret-enough")  # unknown user
    assert not verify_password("not a hash", "s3cret-enough")
    assert hash_password("same") != hash_password("same")  # salted


def test_tokens_are_random_and_compared_exactly() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 43
    assert same_token(a, a) and not same_token(a, b)
    assert not same_token(None, a) and not same_token(a, None) and not same_token("", "")
    assert session_hash(a) != a and len(session_hash(a)) == 64


@pytest.mark.parametrize("status", list(Status))
def test_actions_offered_are_exactly_what_the_state_table_allows(status: Status) -> None:
    offered = allowed_actions(status.value)
    for action, kind in SUBSCRIPTION_ACTIONS.items():
        assert (action in offered) == bool(allowed_targets(status, kind)), (status, action)
    if "cancel" in offered:
        for timing in ("immediate", "period_end"):
            allowed = isinstance(lookup(status, CommandKind.CANCEL, timing), Status)
            assert (timing in offered["cancel"]) == allowed
    if status is Status.PENDING_APPROVAL:
        assert {"approve", "reject", "cancel", "terminate"} <= set(offered)
    if status is Status.TERMINATED:
        assert offered == {}


def test_amounts_are_shown_exactly_as_stored() -> None:
    from decimal import Decimal

    from som.console.app import _money

    assert _money(Decimal("0.1") + Decimal("0.2"), "USD") == "0.3 USD"
    assert _money("147.000", "BHD") == "147.000 BHD"  # the currency's digits are kept
    assert _money(None, "EUR") == ""
