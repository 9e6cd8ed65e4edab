"""Revenue recognition (IFRS 15): journal entries on issue, ratable recognition by day at month ends.

* On issue of a document: debit accounts receivable (total), credit deferred revenue
  (subtotal) and tax payable (tax). A credit note has negative amounts, which turns
  every posting to the other side: it reverses.
* Account credit used on an invoice: debit customer credit, credit receivables.
  A credit note settled as account credit: debit receivables, credit customer credit.
* At each month end: debit deferred revenue, credit revenue for the days of each line's
  service period that fall in that month. The month pieces of a line are a cumulative
  rounding split (:func:`split_by_days`), so they sum exactly to the line amount and the
  last month takes the remainder: nothing of a finished service period stays deferred.
* Lines without a service period (one-off charges, setup credits) are recognised at the
  end of the month they were issued in.

Every entry balances: sum of debits == sum of credits (checked on construction).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from services.billing.domain.model import ZERO, Document, Line
from services.billing.domain.proration import split_by_days
from shared.money import DecimalString, format_major, round_half_up
from shared.periods import days_between, days_in_month, month_end_boundaries

Account = Literal[
    "accounts_receivable", "deferred_revenue", "revenue", "tax_payable", "customer_credit", "cash"
]


class Posting(BaseModel):
    """One side of a journal entry line: exactly one of debit and credit is non-zero."""

    model_config = ConfigDict(frozen=True)

    account: Account
    debit: DecimalString = ZERO
    credit: DecimalString = ZERO

    @model_validator(mode="after")
    def _one_side(self) -> Posting:
        if self.debit < 0 or self.credit < 0 or (self.debit and self.credit):
            raise ValueError("a posting is a non-negative debit or a non-negative credit")
        return self


class JournalEntry(BaseModel):
    """A balanced journal entry."""

    model_config = ConfigDict(frozen=True)

    entry_date: date
    currency: str
    description: str
    postings: tuple[Posting, ...]
    document_number: str | None = None

    @model_validator(mode="after")
    def _balanced(self) -> JournalEntry:
        if self.total_debit != self.total_credit:
            raise ValueError(f"unbalanced entry: debit {self.total_debit} != credit {self.total_credit}")
        return self

    @property
    def total_debit(self) -> Decimal:
        """Sum of debits."""
        return sum((p.debit for p in self.postings), ZERO)

    @property
    def total_credit(self) -> Decimal:
        """Sum of credits."""
        return sum((p.credit for p in self.postings), ZERO)


def _post(account: Account, debit_amount: Decimal) -> Posting | None:
    # A signed amount: positive is a debit, negative a credit, zero nothing.
    if debit_amount > 0:
        return Posting(account=account, debit=debit_amount)
    if debit_amount < 0:
        return Posting(account=account, credit=-debit_amount)
    return None


def _entry(
    entry_date: date,
    currency: str,
    description: str,
    signed: Iterable[tuple[Account, Decimal]],
    document_number: str | None = None,
) -> JournalEntry | None:
    postings = tuple(p for a, amount in signed if (p := _post(a, amount)) is not None)
    if not postings:
        return None
    return JournalEntry(
        entry_date=entry_date,
        currency=currency,
        description=description,
        postings=postings,
        document_number=document_number,
    )


def journal_on_issue(document: Document) -> list[JournalEntry]:
    """Entries when a document is issued: receivables/deferred revenue/tax, and account credit moves."""
    n, cur, day = document.document_number, document.currency, document.issue_date
    label = f"{document.document_type} {n or '(unnumbered)'}"
    entries = [
        _entry(
            day,
            cur,
            f"{label} issued",
            [
                ("accounts_receivable", document.total),
                ("deferred_revenue", -document.subtotal),
                ("tax_payable", -document.tax),
            ],
            n,
        ),
        _entry(
            day,
            cur,
            f"{label}: account credit applied",
            [
                ("customer_credit", document.credits_applied),
                ("accounts_receivable", -document.credits_applied),
            ],
            n,
        ),
        _entry(
            day,
            cur,
            f"{label}: credited to the customer's account",
            [
                ("accounts_receivable", document.credit_to_account),
                ("customer_credit", -document.credit_to_account),
            ],
            n,
        ),
        _entry(
            day,
            cur,
            f"{label}: refunded to the customer",
            [
                ("accounts_receivable", document.refund_amount),
                ("cash", -document.refund_amount),
            ],
            n,
        ),
    ]
    return [e for e in entries if e is not None]


def month_end(day: date) -> date:
    """Last day of ``day``'s month."""
    return date(day.year, day.month, days_in_month(day.year, day.month))


@dataclass(frozen=True)
class RecognitionPiece:
    """The part of one line recognised at one month end, for the days of it served in that month."""

    line_index: int
    description: str
    month_end: date
    service_start: date
    service_end: date
    days: int
    amount: Decimal


def line_schedule(
    line: Line, currency: str, *, issue_date: date, line_index: int = 0
) -> list[RecognitionPiece]:
    """Month-end recognition pieces of one line; they sum exactly to ``line.amount``."""
    s, e = line.service_period_start, line.service_period_end
    if s is None or e is None:
        # Point in time: recognised at the end of the month of issue.
        return [
            RecognitionPiece(
                line_index,
                line.description,
                month_end(issue_date),
                issue_date,
                issue_date + timedelta(days=1),
                0,
                line.amount,
            )
        ]
    bounds = [s, *month_end_boundaries(s, e), e]
    spans = list(pairwise(bounds))
    pieces = split_by_days(line.amount, [days_between(a, b) for a, b in spans], currency)
    return [
        RecognitionPiece(line_index, line.description, month_end(a), a, b, days_between(a, b), amount)
        for (a, b), amount in zip(spans, pieces, strict=True)
    ]


def revenue_schedule(lines: Sequence[Line], currency: str, *, issue_date: date) -> list[RecognitionPiece]:
    """Recognition pieces of every line, ordered by month end then line."""
    out = [
        p
        for i, line in enumerate(lines)
        for p in line_schedule(line, currency, issue_date=issue_date, line_index=i)
    ]
    return sorted(out, key=lambda p: (p.month_end, p.line_index))


def recognised_by_day(line: Line, currency: str, through: date) -> Decimal:
    """Revenue of ``line`` earned on the days before ``through`` (ratably by day, half-up).

    Equal to the sum of the month pieces up to a month boundary (same cumulative rounding).
    """
    s, e = line.service_period_start, line.service_period_end
    if s is None or e is None:
        raise ValueError("a line without a service period is recognised at a point in time")
    served = min(max(days_between(s, through), 0), days_between(s, e))
    return round_half_up(line.amount * served / days_between(s, e), currency) if served else ZERO


def month_end_entry(pieces: Iterable[RecognitionPiece], at: date, currency: str) -> JournalEntry | None:
    """The month-end entry: debit deferred revenue, credit revenue, for the pieces of month ``at``."""
    amount = sum((p.amount for p in pieces if p.month_end == month_end(at)), ZERO)
    return _entry(
        month_end(at),
        currency,
        f"revenue recognised for {month_end(at):%Y-%m}",
        [
            ("deferred_revenue", amount),
            ("revenue", -amount),
        ],
    )


def recognition_entries(pieces: Sequence[RecognitionPiece], currency: str) -> list[JournalEntry]:
    """One month-end entry per month that has pieces, in date order."""
    months = sorted({p.month_end for p in pieces})
    return [e for m in months if (e := month_end_entry(pieces, m, currency)) is not None]


def deferred_balance(pieces: Sequence[RecognitionPiece], as_of: date) -> Decimal:
    """What is still deferred on ``as_of``: all pieces minus those whose month end has passed."""
    return sum((p.amount for p in pieces if p.month_end > as_of), ZERO)


def format_revenue_schedule(pieces: Sequence[RecognitionPiece], currency: str) -> str:
    """A plain-text revenue schedule: one row per piece, a total per month, and the grand total."""
    rows = [f"{'month end':<10}  {'line':>4}  {'service days':<25}  {'days':>4}  {'amount':>14}"]
    for m in sorted({p.month_end for p in pieces}):
        month = [p for p in pieces if p.month_end == m]
        for p in month:
            span = f"{p.service_start} to {p.service_end}" if p.days else "point in time"
            rows.append(
                f"{m.isoformat():<10}  {p.line_index:>4}  {span:<25}  {p.days:>4}  "
                f"{format_major(p.amount, currency):>14}"
            )
        subtotal = sum((p.amount for p in month), ZERO)
        label = "month total"
        rows.append(f"{'':<10}  {'':>4}  {label:<25}  {'':>4}  {format_major(subtotal, currency):>14}")
    total = sum((p.amount for p in pieces), ZERO)
    rows.append(f"{'total':<10}  {'':>4}  {'':<25}  {'':>4}  {format_major(total, currency):>14} {currency}")
    return "\n".join(rows)
