"""Revenue recognition (IFRS 15) on ``accounting.journal``: entries computed at issue, posted by timers.

Every entry of a document is computed when the document is issued, by the pure domain
(:func:`journal_on_issue`, :func:`revenue_schedule`, :func:`recognition_entries`), and stored
as a billing timer whose payload is the finished ``JournalEntryPosted``:

* the issue entries (receivables / deferred revenue / tax payable, and account-credit moves)
  are due on the issue date, so they are published with the document at once
  (:func:`shared.timekeeping.schedule_or_publish`);
* each month-end recognition entry (deferred revenue -> revenue for the days of the service
  period in that month) is due at the close of that month's last day (00:00 UTC of the next
  day) on the subscription's clock.

Credit notes carry negative amounts, so their entries reverse. Every entry balances (the
domain refuses to build one that does not). Timers make the posting durable and exactly once,
and a test clock moves the books with the subscription.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from services.billing.domain import (
    Document,
    JournalEntry,
    journal_on_issue,
    recognition_entries,
    revenue_schedule,
)
from shared import timekeeping
from shared.contracts import events as ev
from shared.contracts.envelope import derived_id
from shared.messaging import topics

ISSUE_KIND = "journal_issue"
RECOGNITION_KIND = "revenue_recognition"


def start_of(day: date) -> datetime:
    """00:00 UTC of ``day``."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def _kind_of(entry: JournalEntry) -> str:
    if "refunded to the customer" in entry.description:
        return "refund"
    if "account credit" in entry.description or "credited to the customer" in entry.description:
        return "account_credit"
    return "issue"


def posted(
    entry: JournalEntry, *, entry_id: str, subscription_id: str, kind: str, test: bool
) -> ev.JournalEntryPosted:
    """The published form of a domain journal entry."""
    return ev.JournalEntryPosted(
        entry_id=entry_id,
        subscription_id=subscription_id,
        kind=kind,  # type: ignore[arg-type]
        entry_date=entry.entry_date,
        currency=entry.currency,
        description=entry.description,
        source_document=entry.document_number,
        lines=[ev.JournalLine(account=p.account, debit=p.debit, credit=p.credit) for p in entry.postings],
        total_debit=entry.total_debit,
        total_credit=entry.total_credit,
        test=test,
    )


def entries_for(
    document: Document, *, test: bool = False
) -> list[tuple[datetime, str, ev.JournalEntryPosted]]:
    """(due time, timer kind, entry) of every journal entry of a numbered document."""
    number = document.document_number
    assert number, "journal entries need the document number"
    out: list[tuple[datetime, str, ev.JournalEntryPosted]] = []
    for i, entry in enumerate(journal_on_issue(document)):
        kind = _kind_of(entry)
        out.append(
            (
                start_of(entry.entry_date),
                ISSUE_KIND,
                posted(
                    entry,
                    entry_id=derived_id("journal", number, kind, str(i)),
                    subscription_id=document.subscription_id,
                    kind=kind,
                    test=test,
                ),
            )
        )
    pieces = revenue_schedule(document.lines, document.currency, issue_date=document.issue_date)
    for entry in recognition_entries(pieces, document.currency):
        entry = entry.model_copy(
            update={
                "document_number": number,
                "description": f"{entry.description} ({document.document_type} {number})",
            }
        )
        out.append(
            (
                start_of(entry.entry_date + timedelta(days=1)),
                RECOGNITION_KIND,
                posted(
                    entry,
                    entry_id=derived_id("journal", number, "recognition", entry.entry_date.isoformat()),
                    subscription_id=document.subscription_id,
                    kind="recognition",
                    test=test,
                ),
            )
        )
    return out


def entry_timers(document: Document, *, clock: str, test: bool = False) -> list[timekeeping.Timer]:
    """The document's journal entries as billing timers on the subscription's clock."""
    return [
        timekeeping.Timer(
            subscription_id=document.subscription_id,
            kind=f"{kind}:{document.document_number}",
            due_at=due_at,
            clock=clock,
            topic=topics.ACCOUNTING_JOURNAL,
            event_type=ev.JOURNAL_ENTRY_POSTED,
            payload=entry,
        )
        for due_at, kind, entry in entries_for(document, test=test)
    ]
