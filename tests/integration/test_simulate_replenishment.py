"""``som simulate`` of a replenishment subscription (examples/scenarios/replenishment-coffee.yaml).

Price list with a 10 % cap per cycle, a customer delay and skip, and a partial delivery on short
stock, through intake, lifecycle and billing. The arithmetic is in the scenario file and here.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import Infra
from tests.integration.test_simulate import _invoices, _simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

D = Decimal


def test_coffee_beans_every_four_weeks(migrated: Infra, tmp_path: Path) -> None:
    result = _simulate(migrated, "replenishment-coffee.yaml", tmp_path)
    assert result["command_rejections"] == []
    invoices = [(i["issue_date"], D(i["total"])) for i in _invoices(result)]
    assert invoices == [
        ("2025-03-03", D("26.18")),  # 2 x 11.00 = 22.00, VAT 19 % 4.18
        ("2025-03-31", D("28.80")),  # 2 x 12.10 (13.50 capped at 11.00 + 10 %) = 24.20, VAT 4.598 -> 4.60
        ("2025-05-03", D("31.68")),  # 2 x 13.31 (capped at 12.10 + 10 %) = 26.62, VAT 5.0578 -> 5.06
        ("2025-06-28", D("642.60")),  # 40 of 50 in stock x 13.50 = 540.00, VAT 102.60
    ]
    bases = [[ln["price_basis"] for ln in i["lines"]] for i in _invoices(result)]
    assert bases[0] == ["catalog price from 2024-01-01"]
    assert "capped at 10% change from 11.00" in bases[1][0]
    assert "capped at 10% change from 12.10" in bases[2][0]
    assert bases[3][0].startswith("price list from 2025-03-10") and "capped" not in bases[3][0]
    orders = [e for e in result["timeline"] if e["type"] == "som.replenishment.order_created"]
    assert [(o["due_date"], o["quantity_ordered"], o["quantity_delivered"]) for o in orders] == [
        ("2025-03-03", 2, 2),
        ("2025-03-31", 2, 2),
        ("2025-05-03", 2, 2),
        ("2025-06-28", 50, 40),
    ]
    delays = [(e["what"], e["due_date"], e["next_due"]) for e in result["timeline"] if "next_due" in e]
    assert delays == [
        ("replenishment delayed (customer_delay)", "2025-04-28", "2025-05-03"),
        ("replenishment delayed (customer_skip)", "2025-05-31", "2025-06-28"),
    ]
