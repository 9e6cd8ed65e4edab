"""`som simulate` runs the two README examples end to end through the real workers.

The command starts the worker set as processes on the session's broker and database (a fresh
namespace), under a test clock, and plays the payment provider.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Infra
from tests.integration.helpers import som_env

# Each example runs months of a scenario through the real workers in a child process.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _simulate(infra: Infra, name: str, tmp_path: Path) -> dict[str, Any]:
    env = som_env(
        SOM_KAFKA_BOOTSTRAP=infra.kafka_bootstrap,
        SOM_DATABASE_URL=infra.database_url,
        SOM_DATA_DIR=str(tmp_path),
    )
    out = tmp_path / "timeline.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "som",
            "simulate",
            str(ROOT / "examples" / "scenarios" / name),
            "--output",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "final status" in done.stdout
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def _invoices(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in result["timeline"] if "total" in e]


def _states(result: dict[str, Any]) -> list[str]:
    return [e["what"] for e in result["timeline"] if e["type"] == "som.subscription.state_changed"]


def test_upgrade_mid_cycle_example(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "upgrade-mid-cycle.yaml", tmp_path)
    assert result["final_status"] == "active"
    totals = [Decimal(i["total"]) for i in _invoices(result)]
    # Starter 18.00 EUR x 2 = 36.00, DE VAT 19 % = 6.84 -> 42.84 on 10 Jan.
    # Upgrade to pro on 25 Jan, period 10 Jan..10 Feb (31 days), 16 days left:
    #   credit 36.00 x 16/31 = -18.58, charge 90.00 x 16/31 = 46.45, rolled into the next invoice.
    # 10 Feb renewal: 90.00 - 18.58 + 46.45 = 117.87, VAT 22.40 -> 140.27.
    # 4 seats from 14 Feb, period 10 Feb..10 Mar (28 days), 24 days left:
    #   credit 90.00 x 24/28 = -77.14, charge 180.00 x 24/28 = 154.29.
    # 10 Mar renewal: 180.00 - 77.14 + 154.29 = 257.15, VAT 48.86 -> 306.01.
    assert totals == [Decimal("42.84"), Decimal("140.27"), Decimal("306.01")]
    feb = _invoices(result)[1]
    kinds = {line["kind"]: Decimal(line["amount"]) for line in feb["lines"]}
    assert kinds == {
        "recurring": Decimal("90.00"),
        "proration_credit": Decimal("-18.58"),
        "proration_charge": Decimal("46.45"),
    }
    assert "active -> active" in _states(result)
    journal = [e for e in result["timeline"] if e["type"] == "som.accounting.journal_entry_posted"]
    assert journal, "the revenue journal moves with the invoices"


def test_pause_dunning_downgrade_cancel_example(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "pause-dunning-cancel.yaml", tmp_path)
    assert result["final_status"] == "cancelled"
    states = _states(result)
    for expected in (
        "active -> paused",
        "paused -> active",
        "active -> past_due",
        "past_due -> active",
        "active -> non_renewing",
        "non_renewing -> cancelled",
    ):
        assert expected in states, (expected, states)
    assert states.index("active -> past_due") < states.index("past_due -> active")
    plans = [e["plan"] for e in result["timeline"] if e["type"] == "som.subscription.state_changed"]
    assert plans[0] == "pro" and plans[-1] == "starter"  # the downgrade took effect at the end of the term
    # Pro 49.00 x 3 = 147.00 a month, US without a state: no tax. Starter 19.00 x 3 = 57.00 after the downgrade.
    totals = [Decimal(i["total"]) for i in _invoices(result)]
    assert totals.count(Decimal("147.00")) >= 3 and totals[-1] == Decimal("57.00")
    assert result["command_rejections"] == []


def test_entitlements_example_two_subscriptions_history_and_pending(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "entitlements-two-subscriptions.yaml", tmp_path)
    assert result["final_status"] == "active"
    assert result["more_subscriptions"]["b"]["final_status"] == "suspended"
    first, granted, pending, late = result["entitlements_at"]
    assert first["limits"]["storage_gb"] == 10 + 2 * 250 and "sso" in first["features"]
    # main upgraded to pro (250) with one add-on (100), b still pro x 2 (500); the grant in force
    assert granted["limits"]["storage_gb"] == 850 and "priority_support" in granted["features"]
    assert granted["overrides"] and [p["kind"] for p in granted["pending"]] == ["override_end"]
    assert "priority_support" not in pending["features"]
    assert [p["kind"] for p in pending["pending"]] == ["plan_change"]
    # b downgraded to starter (10) and suspended (held), main still full: the customer stays full
    assert late["limits"]["storage_gb"] == 350 + 10 and late["access"] == "full"
    b = result["more_subscriptions"]["b"]["subscription_id"]
    b_sets = [e for e in result["timeline"] if e.get("subscription") == b and "access" in e]
    assert b_sets[-1]["access"] == "held" and b_sets[-1]["can_create_instances"] is False
    assert any(e["pending"] and e["pending"][0]["kind"] == "plan_change" for e in b_sets)
