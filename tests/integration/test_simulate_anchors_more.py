"""Second worked examples of Stripe and Chargebee, and ``interval_change_anchor: keep`` through the workers.

Each scenario file (``examples/scenarios/anchors/``) cites its source; the arithmetic is in the
file and here.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Infra
from tests.integration.test_simulate import _invoices, _simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

D = Decimal


def _documents(result: dict[str, Any]) -> list[tuple[str, str, Decimal, Decimal, list[tuple[str, Decimal]]]]:
    return [
        (
            i["issue_date"],
            i["what"].split()[0],
            D(i["total"]),
            D(i["amount_due"]),
            [(ln["kind"], D(ln["amount"])) for ln in i["lines"]],
        )
        for i in _invoices(result)
    ]


def test_stripe_upgrade_halfway_billed_with_the_next_invoice(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/stripe-prorations-upgrade.yaml", tmp_path)
    assert result["command_rejections"] == []
    # Apr 16 with 15 of April's 30 days left: -10.00 x 15/30 = -5.00, +20.00 x 15/30 = +10.00 (Stripe: +5 USD).
    assert _documents(result) == [
        ("2025-04-01", "invoice", D("10.00"), D("10.00"), [("recurring", D("10.00"))]),
        (
            "2025-05-01",
            "invoice",
            D("25.00"),
            D("25.00"),
            [("proration_credit", D("-5.00")), ("proration_charge", D("10.00")), ("recurring", D("20.00"))],
        ),
    ]


def test_chargebee_downgrade_credit_applied_on_the_renewal(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/chargebee-downgrade-now.yaml", tmp_path)
    assert result["command_rejections"] == []
    docs = _documents(result)
    # Apr 5 with 26 of April's 30 days left: credit 30.00 x 26/30 = 26.00, charge 15.00 x 26/30 = 13.00.
    assert docs[0] == ("2025-04-01", "invoice", D("30.00"), D("30.00"), [("recurring", D("30.00"))])
    change = sorted(docs[1:-1])
    assert change == [
        ("2025-04-05", "credit_note", D("-26.00"), D("0.00"), [("proration_credit", D("-26.00"))]),
        ("2025-04-05", "invoice", D("13.00"), D("0.00"), [("proration_charge", D("13.00"))]),
    ]
    # May 1: Silver 15.00, the 13.00 left of the credit applied (Chargebee: applied on the next renewal).
    assert docs[-1] == ("2025-05-01", "invoice", D("15.00"), D("2.00"), [("recurring", D("15.00"))])


def test_interval_change_keeping_the_billing_day(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/killbill-interval-change-keep.yaml", tmp_path)
    assert result["command_rejections"] == []
    # -49.00 x 16/31 = -25.29; 490.00 x 350/365 (Mar 16 2025 - Mar 1 2026) = 469.86; 444.57 at once.
    assert [(d, t, lines) for d, _, t, _, lines in _documents(result)] == [
        ("2025-03-01", D("49.00"), [("recurring", D("49.00"))]),
        ("2025-03-16", D("444.57"), [("proration_credit", D("-25.29")), ("proration_charge", D("469.86"))]),
        ("2026-03-01", D("490.00"), [("recurring", D("490.00"))]),
    ]
    # The lifecycle kept the day too: its renewal came on Mar 1 2026 and the next period is a year from it.
    periods = [e["period"] for e in result["timeline"] if e["type"] == "som.subscription.state_changed"]
    assert periods[-1] == "2026-03-01..2027-03-01"
