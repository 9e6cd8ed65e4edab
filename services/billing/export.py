"""Accounts-receivable and accounting export: invoices, credit notes and journal entries as flat rows,
with per-currency totals that tie the documents to the journal (``som billing export``).

Pure code (the rows come from ``services.billing.views``): amounts stay ``Decimal`` and are written
as exact decimal strings in the currency's minor units; nothing passes through a float.

The tie: for each currency, the documents' totals (invoices positive, credit notes negative) equal
the net debit to ``accounts_receivable`` of the journal's issue entries (kind ``issue``) for those
documents, and every entry's debits equal its credits.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from shared.money import format_major, to_decimal

RECEIVABLES = "accounts_receivable"
COLUMNS = (
    "record_type",
    "document_number",
    "document_type",
    "reason",
    "subscription_id",
    "customer_id",
    "date",
    "due_date",
    "currency",
    "subtotal",
    "tax",
    "total",
    "credits_applied",
    "amount_due",
    "status",
    "entry_id",
    "entry_kind",
    "line",
    "account",
    "debit",
    "credit",
    "description",
    "test",
)


@dataclass
class CurrencyTotals:
    """What the export holds in one currency, and whether documents and journal agree."""

    currency: str
    invoices: int = 0
    invoices_total: Decimal = Decimal(0)
    credit_notes: int = 0
    credit_notes_total: Decimal = Decimal(0)
    journal_entries: int = 0
    journal_debit: Decimal = Decimal(0)
    journal_credit: Decimal = Decimal(0)
    receivables_issued: Decimal = Decimal(0)
    unbalanced_entries: list[str] = field(default_factory=list)

    @property
    def documents_total(self) -> Decimal:
        """Invoices plus credit notes (which are negative)."""
        return self.invoices_total + self.credit_notes_total

    @property
    def ties(self) -> bool:
        """Documents equal the receivables of their issue entries, and the journal balances."""
        return (
            self.documents_total == self.receivables_issued
            and self.journal_debit == self.journal_credit
            and not self.unbalanced_entries
        )

    def as_row(self) -> dict[str, Any]:
        """The totals as a JSON-ready mapping (amounts as decimal strings)."""

        def q(value: Decimal) -> str:
            return format_major(value, self.currency)

        return {
            "record_type": "totals",
            "currency": self.currency,
            "invoices": self.invoices,
            "invoices_total": q(self.invoices_total),
            "credit_notes": self.credit_notes,
            "credit_notes_total": q(self.credit_notes_total),
            "documents_total": q(self.documents_total),
            "journal_entries": self.journal_entries,
            "journal_debit": q(self.journal_debit),
            "journal_credit": q(self.journal_credit),
            "receivables_issued": q(self.receivables_issued),
            "ties": self.ties,
        }


@dataclass(frozen=True)
class Export:
    """Rows of the export in order (documents, then journal lines) and the totals per currency."""

    start: date
    end: date
    rows: list[dict[str, Any]]
    totals: dict[str, CurrencyTotals]

    @property
    def ties(self) -> bool:
        """Every currency ties."""
        return all(t.ties for t in self.totals.values())


def _amount(value: Any, currency: str) -> str:
    """Exact decimal string with the currency's digits; refuses floats and finer digits."""
    return format_major(to_decimal(value), currency)


def build(
    start: date, end: date, documents: Iterable[Mapping[str, Any]], entries: Iterable[Mapping[str, Any]]
) -> Export:
    """Flatten documents (rows of ``views.export_documents``) and posted journal entries (their
    ``JournalEntryPosted`` payloads) into export rows, and add them up per currency."""
    rows: list[dict[str, Any]] = []
    totals: dict[str, CurrencyTotals] = {}
    exported_docs: set[str] = set()
    for d in documents:
        cur = str(d["currency"])
        t = totals.setdefault(cur, CurrencyTotals(cur))
        total = to_decimal(d["total"])
        if d["document_type"] == "invoice":
            t.invoices += 1
            t.invoices_total += total
        else:
            t.credit_notes += 1
            t.credit_notes_total += total
        exported_docs.add(str(d["document_number"]))
        rows.append(
            {
                "record_type": d["document_type"],
                "document_number": d["document_number"],
                "document_type": d["document_type"],
                "reason": d.get("reason") or "",
                "subscription_id": d["subscription_id"],
                "customer_id": d["customer_id"],
                "date": d["issue_date"].isoformat(),
                "due_date": d["due_date"].isoformat(),
                "currency": cur,
                "subtotal": _amount(d["subtotal"], cur),
                "tax": _amount(d["tax"], cur),
                "total": _amount(d["total"], cur),
                "credits_applied": _amount(d.get("credits_applied") or 0, cur),
                "amount_due": _amount(d["amount_due"], cur),
                "status": d["status"],
                "test": bool(d.get("test")),
            }
        )
    for e in entries:
        cur = str(e["currency"])
        t = totals.setdefault(cur, CurrencyTotals(cur))
        t.journal_entries += 1
        debit = sum((to_decimal(line["debit"]) for line in e["lines"]), Decimal(0))
        credit = sum((to_decimal(line["credit"]) for line in e["lines"]), Decimal(0))
        t.journal_debit += debit
        t.journal_credit += credit
        if debit != credit:
            t.unbalanced_entries.append(str(e["entry_id"]))
        for i, line in enumerate(e["lines"]):
            issued = e["kind"] == "issue" and e.get("source_document") in exported_docs
            if issued and line["account"] == RECEIVABLES:
                t.receivables_issued += to_decimal(line["debit"]) - to_decimal(line["credit"])
            rows.append(
                {
                    "record_type": "journal_line",
                    "document_number": e.get("source_document") or "",
                    "subscription_id": e["subscription_id"],
                    "date": str(e["entry_date"]),
                    "currency": cur,
                    "entry_id": e["entry_id"],
                    "entry_kind": e["kind"],
                    "line": i,
                    "account": line["account"],
                    "debit": _amount(line["debit"], cur),
                    "credit": _amount(line["credit"], cur),
                    "description": e["description"],
                    "test": bool(e.get("test")),
                }
            )
    return Export(start, end, rows, dict(sorted(totals.items())))


def to_csv(export: Export) -> str:
    """One CSV table: a ``record_type`` column tells invoices, credit notes and journal lines apart."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in export.rows:
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    return buf.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_jsonl(export: Export) -> str:
    """One JSON object per line: the rows, then one ``totals`` record per currency."""
    lines = [json.dumps(row, sort_keys=False) for row in export.rows]
    lines += [json.dumps(t.as_row()) for t in export.totals.values()]
    return "".join(line + "\n" for line in lines)
