"""Scenario files: the README examples load; malformed ones fail with a message naming the field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from som.simulate import ScenarioError, load_scenario, step_command

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["upgrade-mid-cycle.yaml", "pause-dunning-cancel.yaml"])
def test_readme_examples_load(name: str) -> None:
    scenario = load_scenario(ROOT / "examples" / "scenarios" / name)
    assert scenario.steps and all(s.at >= scenario.start for s in scenario.steps)
    assert (ROOT / "README.md").read_text().count(f"examples/scenarios/{name}") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nplan: pro\n", "start"),
        (
            "name: x\nplan: pro\nstart: 2025-01-01\nsteps:\n  - at: 2024-12-01\n    resume: true\n",
            "date order",
        ),
        ("name: x\nplan: pro\nstart: 2025-01-01\nsteps:\n  - at: 2025-02-01\n", "exactly one action"),
        (
            "name: x\nplan: pro\nstart: 2025-01-01\nsteps:\n  - at: 2025-02-01\n    pause: {}\n    resume: true\n",
            "exactly one action",
        ),
        ("name: x\nplan: pro\nstart: 2025-01-01\ncolour: blue\n", "colour"),
        ("{not yaml", "cannot read"),
    ],
)
def test_malformed_scenarios_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(f)


OLD_SCENARIO = """\
name: written before the timing vocabulary was unified
plan: pro
start: 2025-03-01
steps:
  - at: 2025-03-10
    change_plan: {plan: starter, timing: end_of_term}
  - at: 2025-03-11
    change_quantity: {quantity: 4, timing: period_end}
  - at: 2025-03-12
    change_quantity: 5
  - at: 2025-03-15
    cancel: {timing: end_of_term}
  - at: 2025-03-16
    pause: {resume_on: 2025-04-01}
  - at: 2025-03-17
    add_addon: {plan: extra-storage}
"""


def test_old_scenarios_stay_valid_and_each_step_sends_a_typed_command(tmp_path: Path) -> None:
    f = tmp_path / "old.yaml"
    f.write_text(OLD_SCENARIO)
    commands = [step_command(s) for s in load_scenario(f).steps]
    assert [c.model_dump(mode="json", exclude_defaults=False) if c else None for c in commands] == [
        # `billing_interval` and `invoice` (issue 11) are new optional fields: None leaves it to the billing policy.
        {
            "command": "change_plan",
            "plan_id": "starter",
            "quantity": None,
            "timing": "period_end",
            "billing_interval": None,
            "invoice": None,
        },
        {"command": "change_quantity", "quantity": 4, "timing": "period_end", "invoice": None},
        {"command": "change_quantity", "quantity": 5, "timing": "immediate", "invoice": None},
        {"command": "cancel", "timing": "period_end"},
        {"command": "pause", "resume_on": "2025-04-01"},
        {"command": "add_addon", "addon_plan_id": "extra-storage", "quantity": 1},
    ]


def test_a_step_with_an_unknown_timing_or_key_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        "name: x\nplan: pro\nstart: 2025-01-01\nsteps:\n  - at: 2025-02-01\n    cancel: {timing: later}\n"
    )
    with pytest.raises(ScenarioError, match="timing"):
        load_scenario(f)
    f.write_text(
        "name: x\nplan: pro\nstart: 2025-01-01\nsteps:\n  - at: 2025-02-01\n    cancel: {timming: immediate}\n"
    )
    with pytest.raises(ScenarioError, match="timming"):
        load_scenario(f)


NEW_KEYS = """\
name: issue 11 keys
plan: pro
start: 2025-03-01
steps:
  - at: 2025-03-10
    change_plan: {plan: enterprise, invoice: now}
  - at: 2025-03-11T09:30:00Z
    change_quantity: {quantity: 4, timing: immediate, invoice: next}
  - at: 2025-04-01
    before_renewal: true
    change_quantity: 6
"""


def test_invoice_time_of_day_and_before_renewal_steps(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    f = tmp_path / "new.yaml"
    f.write_text(NEW_KEYS)
    steps = load_scenario(f).steps
    assert [step_command(s).model_dump(mode="json")["invoice"] for s in steps] == ["now", "next", None]  # type: ignore[union-attr]
    assert steps[0].moment == datetime(2025, 3, 10, 12, tzinfo=UTC)  # a date: noon, after the renewals
    assert steps[1].moment == datetime(2025, 3, 11, 9, 30, tzinfo=UTC)
    # Before the renewal: effective at 00:00, the clock stops just short of it (the renewal timer waits).
    assert steps[2].moment == datetime(2025, 4, 1, tzinfo=UTC)
    assert (
        steps[2].clock_target < steps[2].moment and steps[2].clock_target.date().isoformat() == "2025-03-31"
    )
    f.write_text(
        NEW_KEYS.replace(
            "change_plan: {plan: enterprise, invoice: now}", "change_plan: {plan: x, invoice: later}"
        )
    )
    with pytest.raises(ScenarioError, match="invoice"):
        load_scenario(f)


def test_scenario_conventions_become_the_workers_catalog_and_policy(tmp_path: Path) -> None:
    from services.billing.domain.policy import load_billing_policy
    from shared.catalog import load_catalog
    from som.simulate import ScenarioConventions, convention_files

    conventions = ScenarioConventions.model_validate(
        {
            "proration": {"day_count": "30_360", "change_day_used": True},
            "charge_mode": {"starter": "in_arrears"},
            "policy": {"quantity_change": {"presentation": "difference"}},
        }
    )
    env = convention_files(conventions, tmp_path)
    catalog = load_catalog(env["SOM_CATALOG_PATH"])
    assert catalog.proration_for("pro").day_count == "30_360" and catalog.proration_for("pro").change_day_used
    assert catalog.charge_mode("starter") == "in_arrears" and catalog.charge_mode("pro") == "in_advance"
    policy = load_billing_policy(env["SOM_BILLING_POLICY_PATH"])
    assert policy.quantity_change.presentation == "difference"
    assert policy.quantity_change.decrease.timing == "period_end"  # the rest of the shipped policy stays
    with pytest.raises(ScenarioError, match="unknown plans"):
        convention_files(ScenarioConventions(charge_mode={"nope": "in_arrears"}), tmp_path)
    with pytest.raises(ScenarioError, match="policy"):
        convention_files(ScenarioConventions(policy={"pause": {"invoicing": "sometimes"}}), tmp_path)


def test_scenario_conventions_add_a_worked_examples_own_plans(tmp_path: Path) -> None:
    from shared.catalog import load_catalog
    from som.simulate import ScenarioConventions, convention_files

    plan = {
        "id": "gold",
        "name": "Gold",
        "product": "example",
        "tier": 2,
        "prices": [
            {
                "currency": "USD",
                "billing_interval": "P1M",
                "unit_amount": "30.00",
                "effective_from": "2024-01-01",
            }
        ],
    }
    env = convention_files(ScenarioConventions(plans=[plan], charge_mode={"gold": "in_arrears"}), tmp_path)
    catalog = load_catalog(env["SOM_CATALOG_PATH"])
    assert (
        catalog.plan("gold").prices[0].unit_amount == Decimal("30.00")
        and catalog.charge_mode("gold") == "in_arrears"
    )
    assert catalog.find("pro") is not None  # the packaged plans stay
    with pytest.raises(ScenarioError, match="already in the catalog"):
        convention_files(ScenarioConventions(plans=[{**plan, "id": "pro"}]), tmp_path)
    with pytest.raises(ScenarioError, match=r"conventions\.plans"):
        convention_files(ScenarioConventions(plans=[{**plan, "prices": "none"}]), tmp_path)
