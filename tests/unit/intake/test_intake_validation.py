"""Validation rules, order value and impact score."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from intake_samples import all_samples

from services.intake.domain.mapping import resolve_plan
from services.intake.domain.normalizers import normalize
from services.intake.domain.policy import EffectivePolicy, effective_policy
from services.intake.domain.validation import CustomerCredit, impact_score, order_value, validate
from shared.catalog import Catalog, cached_catalog
from shared.contracts.canonical import CanonicalOrderChange, RejectionReason

CATALOG = cached_catalog()
STOCKED = Catalog.model_validate(
    {
        "plans": [
            {
                "id": "coffee-box",
                "name": "Coffee box",
                "product": "beans",
                "stock": 5,
                "regions": ["eu"],
                "prices": [
                    {
                        "currency": "EUR",
                        "billing_interval": "P1M",
                        "unit_amount": "20.00",
                        "effective_from": "2024-01-01",
                    }
                ],
            }
        ]
    }
)


def change(**overrides: Any) -> CanonicalOrderChange:
    values: dict[str, Any] = {
        "action": "create",
        "phase": "effective",
        "channel": "direct",
        "channel_subscription_id": "s-1",
        "plan": "pro",
        "quantity": 5,
        "billing_interval": "P1M",
        "currency": "USD",
        "effective_at": "2025-03-01T00:00:00.000Z",
        "status_after": "active",
    }
    values.update(overrides)
    return CanonicalOrderChange(**values)


def policy(**overrides: Any) -> EffectivePolicy:
    return EffectivePolicy(channel="direct", **overrides)


def run(
    c: CanonicalOrderChange,
    *,
    plan_id: str | None = "pro",
    customer: CustomerCredit | None = None,
    pol: EffectivePolicy | None = None,
    region: str | None = None,
    value: Decimal | None = None,
    catalog: Catalog = CATALOG,
) -> list[str]:
    reasons = validate(
        c,
        catalog=catalog,
        plan_id=plan_id,
        customer=customer,
        policy=pol or policy(),
        region=region,
        order_value=value,
    )
    assert all(isinstance(r, RejectionReason) for r in reasons)
    return [r.code for r in reasons]


def test_a_good_order_passes() -> None:
    assert (
        run(change(), region="eu", customer=CustomerCredit(customer_id="c", credit_limit=Decimal(1000))) == []
    )


def test_plan_required_unknown_and_optional() -> None:
    assert run(change(plan=None), plan_id=None) == ["MISSING_FIELD"]
    assert run(change(plan="gold"), plan_id=None) == ["UNKNOWN_PLAN"]
    assert run(change(plan="gold"), plan_id="gold") == ["UNKNOWN_PLAN"]
    assert run(change(plan=None), plan_id=None, pol=policy(require_plan=False)) == []
    assert run(change(action="change_quantity", quantity=None)) == ["MISSING_FIELD"]


def test_credit_hold_and_limit() -> None:
    held = CustomerCredit(customer_id="c", credit_hold=True)
    assert run(change(), customer=held) == ["CREDIT_HOLD"]
    limited = CustomerCredit.model_validate({"customer_id": "c", "credit_limit": "200", "currency": "usd"})
    assert run(change(), customer=limited, value=Decimal("245.00")) == ["CREDIT_LIMIT_EXCEEDED"]
    assert run(change(), customer=limited, value=Decimal("200.00")) == []  # at the limit is fine
    assert run(change(), customer=limited, value=None) == []  # unknown value: nothing to compare


def test_credit_limit_in_another_currency_is_not_compared() -> None:
    euro = CustomerCredit(customer_id="c", credit_limit=Decimal(10), currency="EUR")
    assert run(change(), customer=euro, value=Decimal(1000)) == []


def test_policy_skips_credit_or_raises_the_limit() -> None:
    limited = CustomerCredit(customer_id="c", credit_hold=True, credit_limit=Decimal(100))
    assert run(change(), customer=limited, value=Decimal(500), pol=policy(credit_check=False)) == []
    enterprise = policy(credit_limit=Decimal(100_000))
    assert (
        run(
            change(),
            customer=limited.model_copy(update={"credit_hold": False}),
            value=Decimal(500),
            pol=enterprise,
        )
        == []
    )


def test_region_availability() -> None:
    assert run(change(plan="enterprise", quantity=20), plan_id="enterprise", region="apac") == [
        "REGION_UNAVAILABLE"
    ]
    assert run(change(plan="enterprise", quantity=20), plan_id="enterprise", region="EU") == []
    assert run(change(), region=None) == []  # unknown region: the channel did not say
    off = policy(check_availability=False)
    assert run(change(plan="enterprise", quantity=20), plan_id="enterprise", region="apac", pol=off) == []


def test_stock_for_stock_limited_plans() -> None:
    box = change(plan="coffee-box", currency="EUR", quantity=6)
    assert run(box, plan_id="coffee-box", catalog=STOCKED) == ["OUT_OF_STOCK"]
    assert run(box.model_copy(update={"quantity": 5}), plan_id="coffee-box", catalog=STOCKED) == []


def test_catalog_rules() -> None:
    assert run(change(billing_interval="P1W")) == ["BILLING_INTERVAL_NOT_ALLOWED"]
    assert run(change(currency="GBP")) == ["CURRENCY_NOT_PRICED"]
    # EUR is priced for enterprise, but only per year
    assert run(change(plan="enterprise", currency="EUR", quantity=10), plan_id="enterprise") == [
        "CURRENCY_NOT_PRICED"
    ]
    assert run(change(quantity=101)) == ["QUANTITY_OUT_OF_BOUNDS"]
    assert run(change(plan="enterprise", quantity=9), plan_id="enterprise") == ["QUANTITY_OUT_OF_BOUNDS"]
    assert run(change(quantity=101, currency="GBP"), pol=policy(check_catalog=False)) == []


def test_every_problem_is_reported_at_once() -> None:
    held = CustomerCredit(customer_id="c", credit_hold=True)
    found = run(change(quantity=500, currency="GBP", billing_interval="P2Y"), customer=held, region="mars")
    assert set(found) == {
        "CREDIT_HOLD",
        "REGION_UNAVAILABLE",
        "BILLING_INTERVAL_NOT_ALLOWED",
        "CURRENCY_NOT_PRICED",
        "QUANTITY_OUT_OF_BOUNDS",
    }


@pytest.mark.parametrize(
    "action", ["cancel", "suspend", "renew", "refresh", "uncancel", "create_failed", "reinstate"]
)
def test_channel_facts_are_never_refused(action: str) -> None:
    held = CustomerCredit(customer_id="c", credit_hold=True)
    assert run(change(action=action, quantity=10_000, currency="GBP"), customer=held) == []


def test_withdrawn_or_failed_changes_are_not_checked() -> None:
    assert run(change(action="change_plan", phase="withdrawn", quantity=10_000)) == []


def test_order_value_prefers_the_channel_amount() -> None:
    assert order_value(change(amount="12000.00", unit_amount="1.00"), CATALOG, "pro") == Decimal("12000.00")
    assert order_value(change(unit_amount="49.005", quantity=2), CATALOG, "pro") == Decimal("98.010")
    assert order_value(change(), CATALOG, "pro") == Decimal("245.00")  # catalog: 49.00 x 5
    assert order_value(change(effective_at="2027-06-01T00:00:00.000Z"), CATALOG, "pro") == Decimal("295.00")
    assert order_value(change(currency=None), CATALOG, "pro") is None
    assert order_value(change(effective_at=None), CATALOG, "pro") is None
    assert order_value(change(), CATALOG, None) is None


def test_impact_score() -> None:
    assert impact_score(Decimal("200.00"), Decimal("1.5")) == Decimal("300.000")
    assert impact_score(None, Decimal(2), default_value=Decimal(50)) == Decimal(100)
    assert impact_score(None, Decimal(1)) == Decimal("100.00")  # policy.yaml defaults.default_order_value
    assert impact_score(Decimal(-10), Decimal(3)) == 0
    ranked = sorted(
        [(Decimal(10), Decimal(3)), (Decimal(100), Decimal("0.5")), (None, Decimal(1))],
        key=lambda v: impact_score(*v),
    )
    assert ranked[-1] == (None, Decimal(1))  # unknown value does not sink to the bottom


def test_every_sample_passes_through_mapping_policy_and_validation() -> None:
    """The whole pure pipeline on every sample; two samples break catalog rules, on purpose visible here."""
    refused: dict[str, list[str]] = {}
    for sample in all_samples():
        for c in normalize(sample.channel, sample.body, sample.transport).changes:
            plan_id = resolve_plan(c.channel, c)
            pol = effective_policy(c.channel, c.account.channel_account_id)
            value = order_value(c, CATALOG, plan_id)
            found = run(c, plan_id=plan_id, pol=pol, value=value)
            if found:
                refused[sample.name] = found
            assert impact_score(value, pol.impact_weight) >= 0
    # 8 (Stripe) and 3 (Cleverbridge) seats of a plan mapped to enterprise, which starts at 10 seats
    assert refused == {
        "stripe/03-change-plan": ["QUANTITY_OUT_OF_BOUNDS"],
        "cleverbridge/03-change-plan": ["QUANTITY_OUT_OF_BOUNDS"],
    }
