"""``services.billing.export``: rows and totals of the AR/accounting export, and the tie to the journal."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.billing import export
from shared.money import MoneyError

D = Decimal
DAY = date(2025, 3, 10)


def document(number: str, total: Decimal, tax: Decimal, currency: str = "EUR") -> dict[str, Any]:
    kind = "invoice" if total >= 0 else "credit_note"
    return {
        "document_number": number,
        "document_type": kind,
        "reason": "renewal",
        "subscription_id": "sub-1",
        "customer_id": "cus-1",
        "issue_date": DAY,
        "due_date": DAY,
        "currency": currency,
        "subtotal": total - tax,
        "tax": tax,
        "total": total,
        "credits_applied": D(0),
        "amount_due": max(total, D(0)),
        "status": "open",
        "test": False,
    }


def issue_entry(number: str, total: Decimal, tax: Decimal, currency: str = "EUR") -> dict[str, Any]:
    """The issue entry as billing posts it: receivables against deferred revenue and tax (signed)."""

    def posting(account: str, signed: Decimal) -> dict[str, str]:
        return {"account": account, "debit": str(max(signed, D(0))), "credit": str(max(-signed, D(0)))}

    lines = [
        posting("accounts_receivable", total),
        posting("deferred_revenue", -(total - tax)),
        posting("tax_payable", -tax),
    ]
    return {
        "entry_id": f"e-{number}",
        "subscription_id": "sub-1",
        "kind": "issue",
        "entry_date": DAY.isoformat(),
        "currency": currency,
        "description": f"{number} issued",
        "source_document": number,
        "lines": lines,
        "total_debit": str(sum(D(p["debit"]) for p in lines)),
        "total_credit": str(sum(D(p["credit"]) for p in lines)),
        "test": False,
    }


cents = st.integers(min_value=-500_000, max_value=500_000).filter(lambda c: c != 0)


@given(st.lists(st.tuples(cents, st.integers(0, 19)), min_size=1, max_size=20))
def test_documents_tie_to_their_issue_entries(amounts: list[tuple[int, int]]) -> None:
    docs, entries = [], []
    for i, (c, rate) in enumerate(amounts):
        total = D(c).scaleb(-2)
        tax = (total * rate / (100 + rate)).quantize(D("0.01"))
        docs.append(document(f"INV-{i}", total, tax))
        entries.append(issue_entry(f"INV-{i}", total, tax))
    result = export.build(DAY, DAY, docs, entries)
    totals = result.totals["EUR"]
    assert result.ties
    assert totals.documents_total == sum(D(c).scaleb(-2) for c, _ in amounts)
    assert totals.invoices + totals.credit_notes == len(amounts)
    # One cent off in one entry's receivables (and balanced elsewhere) breaks the tie.
    broken = json.loads(json.dumps(entries))
    line = broken[0]["lines"][0]
    line["debit"] = str(D(line["debit"]) + D("0.01"))
    broken[0]["lines"].append({"account": "tax_payable", "debit": "0", "credit": "0.01"})
    assert not export.build(DAY, DAY, docs, broken).ties


def test_an_unbalanced_entry_does_not_tie() -> None:
    entry = issue_entry("INV-1", D("119.00"), D("19.00"))
    entry["lines"][1]["credit"] = "99.99"
    result = export.build(DAY, DAY, [document("INV-1", D("119.00"), D("19.00"))], [entry])
    assert not result.ties
    assert result.totals["EUR"].unbalanced_entries == ["e-INV-1"]


def test_a_document_without_its_issue_entry_does_not_tie() -> None:
    result = export.build(DAY, DAY, [document("INV-1", D("10.00"), D("0"))], [])
    assert not result.ties


def test_currencies_are_kept_apart_with_their_digits() -> None:
    docs = [document("INV-1", D("1500"), D("0"), "JPY"), document("INV-2", D("10.500"), D("0.500"), "BHD")]
    entries = [
        issue_entry("INV-1", D("1500"), D("0"), "JPY"),
        issue_entry("INV-2", D("10.500"), D("0.500"), "BHD"),
    ]
    result = export.build(DAY, DAY, docs, entries)
    assert result.ties and list(result.totals) == ["BHD", "JPY"]
    rows = [json.loads(line) for line in export.to_jsonl(result).splitlines()]
    assert [r["total"] for r in rows if r["record_type"] == "invoice"] == ["1500", "10.500"]
    totals = {r["currency"]: r for r in rows if r["record_type"] == "totals"}
    assert totals["BHD"]["documents_total"] == "10.500" and totals["JPY"]["journal_debit"] == "1500"


def test_csv_has_one_table_with_a_record_type() -> None:
    docs = [document("INV-1", D("119.00"), D("19.00")), document("CN-1", D("-11.90"), D("-1.90"))]
    entries = [issue_entry("INV-1", D("119.00"), D("19.00")), issue_entry("CN-1", D("-11.90"), D("-1.90"))]
    rows = list(csv.DictReader(io.StringIO(export.to_csv(export.build(DAY, DAY, docs, entries)))))
    assert [r["record_type"] for r in rows[:2]] == ["invoice", "credit_note"]
    assert {r["record_type"] for r in rows[2:]} == {"journal_line"}
    ar = [D(r["debit"]) - D(r["credit"]) for r in rows if r["account"] == "accounts_receivable"]
    assert sum(ar) == D("107.10") == sum(D(r["total"]) for r in rows[:2])
    assert rows[1]["total"] == "-11.90"


def test_floats_are_refused() -> None:
    doc = document("INV-1", D("1.10"), D("0"))
    doc["total"] = 1.1
    with pytest.raises(MoneyError):
        export.build(DAY, DAY, [doc], [])
