"""Worked examples of the anchor billing systems, run by ``som simulate`` through the real workers.

Each scenario file (``examples/scenarios/anchors/``) cites its source; the arithmetic is written
here and in the file. Billing day independent of the start (Kill Bill BCD), calendar billing
(Lago), same-day ordering of a seat change and the renewal, and ``invoice: now`` (Recurly /
Chargebee).
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


def _billed(result: dict[str, Any]) -> list[tuple[str, Decimal, list[tuple[str, Decimal]]]]:
    return [
        (i["issue_date"], D(i["total"]), [(ln["kind"], D(ln["amount"])) for ln in i["lines"]])
        for i in _invoices(result)
    ]


def test_kill_bill_account_bcd(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/killbill-account-bcd.yaml", tmp_path)
    # 49.00 x 9/31 = 14.2258 -> 14.23 for Sep 16 - Sep 25; then full months on the 25th.
    assert _billed(result) == [
        ("2025-09-16", D("14.23"), [("recurring", D("14.23"))]),
        ("2025-09-25", D("49.00"), [("recurring", D("49.00"))]),
        ("2025-10-25", D("49.00"), [("recurring", D("49.00"))]),
    ]


def test_lago_calendar_billing(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/lago-calendar.yaml", tmp_path)
    # 45.00 x 17/31 = 24.677 -> 24.68 for Jan 15 - Feb 1; then the 1st of each month.
    assert [(d, t) for d, t, _ in _billed(result)] == [
        ("2025-01-15", D("24.68")),
        ("2025-02-01", D("45.00")),
        ("2025-03-01", D("45.00")),
    ]


def test_seat_change_before_the_renewal_and_an_increase_invoiced_now(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/recurly-seats-renewal-day.yaml", tmp_path)
    assert result["command_rejections"] == []
    assert _billed(result) == [
        ("2025-03-01", D("98.00"), [("recurring", D("98.00"))]),
        # The 5 seats apply before the Apr 1 renewal: billed on it, not credited and re-billed later.
        ("2025-04-01", D("245.00"), [("recurring", D("245.00"))]),
        # invoice: now -> -122.50 + 147.00 = 24.50 at once (April: 30 days, 15 left).
        ("2025-04-16", D("24.50"), [("proration_credit", D("-122.50")), ("proration_charge", D("147.00"))]),
        ("2025-05-01", D("294.00"), [("recurring", D("294.00"))]),
    ]


def test_interval_changes_now_and_at_the_period_end(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/stripe-zuora-interval-change.yaml", tmp_path)
    assert result["command_rejections"] == []
    assert _billed(result) == [
        ("2025-03-01", D("49.00"), [("recurring", D("49.00"))]),
        # -25.29 (16/31 of March) + 490.00 (a year from Mar 16) = 464.71, invoiced at once.
        ("2025-03-16", D("464.71"), [("proration_credit", D("-25.29")), ("recurring", D("490.00"))]),
        ("2026-03-16", D("49.00"), [("recurring", D("49.00"))]),
        ("2026-04-16", D("49.00"), [("recurring", D("49.00"))]),
    ]


def test_stripe_backdated_start(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/stripe-backdate.yaml", tmp_path)
    assert result["command_rejections"] == []
    # January and February at once on Feb 14 (49.00 + 49.00), then the 1st of March.
    assert _billed(result) == [
        ("2025-02-14", D("98.00"), [("recurring", D("49.00")), ("recurring", D("49.00"))]),
        ("2025-03-01", D("49.00"), [("recurring", D("49.00"))]),
    ]


def test_zuora_30_360_on_an_annual_calendar_cycle(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/zuora-30-360-calendar.yaml", tmp_path)
    # 30/360: Mar 15 -> Jan 1 = 286 of 360 days: 490.00 x 286/360 = 389.2778 -> 389.28.
    assert [(d, t) for d, t, _ in _billed(result)] == [
        ("2025-03-15", D("389.28")),
        ("2026-01-01", D("490.00")),
    ]


def test_lago_arrears_termination_day_used(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/lago-arrears-termination.yaml", tmp_path)
    # January in arrears on Feb 1 (18.00); Feb 1..10 used (10/28 x 18.00 = 6.43) at the termination.
    assert [(d, t) for d, t, _ in _billed(result)] == [("2025-02-01", D("18.00")), ("2025-02-10", D("6.43"))]
    assert result["final_status"] == "cancelled"


def test_seat_changes_as_one_line_for_the_difference(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/recurly-chargebee-seat-difference.yaml", tmp_path)
    assert result["command_rejections"] == []
    docs = [
        (
            i["issue_date"],
            i["what"].split()[0],
            D(i["total"]),
            D(i["amount_due"]),
            [D(ln["amount"]) for ln in i["lines"]],
        )
        for i in _invoices(result)
    ]
    assert docs == [
        ("2025-04-01", "invoice", D("245.00"), D("245.00"), [D("245.00")]),
        ("2025-04-16", "invoice", D("73.50"), D("73.50"), [D("73.50")]),  # 196.00 - 122.50
        ("2025-05-01", "invoice", D("392.00"), D("392.00"), [D("392.00")]),
        ("2025-05-16", "credit_note", D("-75.87"), D("0.00"), [D("-75.87")]),  # 126.45 - 202.32
        ("2025-06-01", "invoice", D("245.00"), D("169.13"), [D("245.00")]),  # 75.87 from the balance
    ]


def test_kill_bill_in_arrear_with_fixed_30_day_months(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "anchors/killbill-fixed30-in-arrear.yaml", tmp_path)
    # 9/30 x 19.00 = 5.70 for the stub; 19.00 for Sep 25 - Oct 25; 10/30 x 19.00 = 6.33 on cancellation.
    assert [(d, t) for d, t, _ in _billed(result)] == [
        ("2025-09-25", D("5.70")),
        ("2025-10-25", D("19.00")),
        ("2025-11-04", D("6.33")),
    ]
    assert result["final_status"] == "cancelled"
