"""Policy merging (defaults < channel < account) and channel id -> catalog plan mapping."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.intake.domain.mapping import (
    ChannelMappings,
    MappingError,
    check_mappings,
    load_mappings,
    resolve_plan,
)
from services.intake.domain.policy import PolicyError, PolicyFile, effective_policy, load_policy
from shared.catalog import cached_catalog
from shared.contracts.canonical import CHANNELS, CanonicalOrderChange

POLICY = PolicyFile.model_validate(
    {
        "defaults": {"credit_limit": "1000", "impact_weight": "1", "default_order_value": "50"},
        "channels": {
            "stripe": {"credit_check": False, "impact_weight": "2"},
            "omnistrate": {"approval": "manual"},
        },
        "accounts": [
            {"account_id": "big", "credit_limit": "100000", "note": "enterprise"},
            {"account_id": "big", "channel": "stripe", "impact_weight": "5"},
            {"account_id": "nolimit", "credit_limit": None},
        ],
    }
)


def test_defaults_apply_everywhere() -> None:
    p = effective_policy("direct", None, POLICY)
    assert (p.approval, p.credit_check, p.credit_limit, p.impact_weight) == (
        "auto",
        True,
        Decimal(1000),
        Decimal(1),
    )
    assert p.sources == ("defaults",)


def test_channel_overrides_defaults_field_by_field() -> None:
    p = effective_policy("stripe", "someone", POLICY)
    assert (p.credit_check, p.impact_weight, p.credit_limit) == (False, Decimal(2), Decimal(1000))
    assert effective_policy("omnistrate", None, POLICY).approval == "manual"


def test_account_overrides_channel_and_channel_specific_accounts_win() -> None:
    on_direct = effective_policy("direct", "big", POLICY)
    assert (on_direct.credit_limit, on_direct.impact_weight) == (Decimal(100000), Decimal(1))
    on_stripe = effective_policy("stripe", "big", POLICY)
    assert (on_stripe.credit_limit, on_stripe.impact_weight, on_stripe.credit_check) == (
        Decimal(100000),
        Decimal(5),
        False,
    )
    assert on_stripe.sources == ("defaults", "channel:stripe", "account:big", "account:stripe/big")


def test_explicit_null_removes_a_limit() -> None:
    assert effective_policy("direct", "nolimit", POLICY).credit_limit is None


@pytest.mark.parametrize(
    "bad",
    [
        {"defaults": {"approval": "sometimes"}},
        {"defaults": {"impact_weight": 1.5}},  # floats are refused: write "1.5"
        {"defaults": {"impact_weight": "-1"}},
        {"channels": {"myspace": {}}},
        {"channels": {"stripe": {"credit_chek": False}}},  # typo
        {"channels": {"stripe": {"credit_check": None}}},
        {"accounts": [{"credit_limit": "5"}]},  # no account_id
    ],
)
def test_malformed_policies_are_refused(bad: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(PolicyError):
        load_policy(path)


def test_the_packaged_policy_loads_and_covers_the_examples() -> None:
    packaged = load_policy()
    assert set(packaged.channels) == set(CHANNELS)
    assert effective_policy("azure_marketplace", None).credit_check is False  # marketplace: already charged
    assert effective_policy("omnistrate", None).approval == "manual"  # beta channel
    assert effective_policy("direct", "acct-enterprise-001").credit_limit == Decimal("250000.00")
    assert effective_policy("direct", None).credit_limit is None


# -- mapping -------------------------------------------------------------------------------------


def probe(channel: str, **fields: Any) -> CanonicalOrderChange:
    return CanonicalOrderChange(
        action="create",
        phase="effective",
        channel=channel,
        channel_subscription_id="x",
        status_after="active",
        **fields,
    )


MAPPINGS = ChannelMappings.model_validate(
    {
        "channels": {
            "direct": {"catalog_ids": True},
            "stripe": {
                "plans": {"price_team": "pro"},
                "offers": {"promo": "starter"},
                "products": {"prod_biz": "enterprise"},
                "patterns": [{"match": "(?i)^ent", "plan": "enterprise"}],
                "default": "starter",
            },
            "cleverbridge": {"plans": {318402: "pro"}},
        }
    }
)


def test_resolution_order() -> None:
    assert resolve_plan("stripe", probe("stripe", plan="price_team", product="prod_biz"), MAPPINGS) == "pro"
    assert resolve_plan(
        "stripe", probe("stripe", plan="price_x", offer_id="promo", product="prod_biz"), MAPPINGS
    ) == ("starter")
    assert (
        resolve_plan("stripe", probe("stripe", plan="price_x", product="prod_biz"), MAPPINGS) == "enterprise"
    )
    assert resolve_plan("stripe", probe("stripe", plan="Enterprise-2025"), MAPPINGS) == "enterprise"
    assert resolve_plan("stripe", probe("stripe", plan="unknown"), MAPPINGS) == "starter"  # default
    assert resolve_plan("direct", probe("direct", plan="pro"), MAPPINGS) == "pro"
    assert resolve_plan("cleverbridge", probe("cleverbridge", plan="318402"), MAPPINGS) == "pro"  # int keys
    assert resolve_plan("gcp_marketplace", probe("gcp_marketplace", plan="p"), MAPPINGS) is None


def test_packaged_mappings_point_at_catalog_plans() -> None:
    packaged = load_mappings()
    assert check_mappings(packaged, cached_catalog()) == []
    assert resolve_plan("azure_marketplace", probe("azure_marketplace", plan="team-monthly")) == "pro"
    assert (
        resolve_plan("azure_marketplace", probe("azure_marketplace", plan="business-annual")) == "enterprise"
    )
    assert resolve_plan("stripe", probe("stripe", plan="price_1QxR2aKf3ZpL9eWmTeamUSD")) == "pro"
    assert resolve_plan("aws_marketplace", probe("aws_marketplace", offer_id="offer-2wn6qzk4hbt7e")) == "pro"
    # A channel that never sends a plan falls back to its configured default (one-plan listings).
    assert resolve_plan("shopify", probe("shopify")) == "pro"
    assert resolve_plan("gcp_marketplace", probe("gcp_marketplace", plan="scale-monthly")) == "enterprise"
    assert resolve_plan("gcp_marketplace", probe("gcp_marketplace")) == "pro"
    assert (
        resolve_plan("omnistrate", probe("omnistrate", plan="no-such-plan")) is None
    )  # no default: unresolved


def test_check_mappings_finds_targets_outside_the_catalog() -> None:
    bad = ChannelMappings.model_validate(
        {"channels": {"stripe": {"plans": {"p": "platinum"}, "default": "gold"}}}
    )
    assert check_mappings(bad, cached_catalog()) == [
        "stripe: 'gold' is not a catalog plan",
        "stripe: 'platinum' is not a catalog plan",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"channels": {"myspace": {}}},
        {"channels": {"stripe": {"patterns": [{"match": "(unclosed", "plan": "pro"}]}}},
        {"channels": {"stripe": {"plan": {"a": "pro"}}}},  # typo: plans
    ],
)
def test_malformed_mappings_are_refused(bad: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(MappingError):
        load_mappings(path)
