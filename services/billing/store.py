"""What the billing worker keeps in PostgreSQL (schema ``billing``), and how it reads it back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from services.billing.domain import BillingState, Document, DunningState
from shared.contracts import events as ev
from shared.db.pool import json_of
from shared.db.uow import write
from shared.timekeeping import SYSTEM_CLOCK

_SERIES = {"invoice": "INV", "credit_note": "CN"}


def _json(value: Any) -> Any:
    # jsonb may come back as text, depending on the pool's codecs.
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class BillingRecord:
    """One subscription as billing knows it."""

    subscription_id: str
    lifecycle_version: int
    snapshot: ev.SubscriptionSnapshot
    state: BillingState | None
    account_credit: Decimal
    clock: str | None
    started_on: date | None
    charged_through: date | None = None
    # A number taken ahead of the documents (see load_for_change); not stored with the record.
    reserved_number: str | None = None

    def take_reserved(self, document_type: str) -> str | None:
        """The reserved number when it is of ``document_type``'s series (then it is used up)."""
        number = self.reserved_number
        if number is None or not number.startswith(f"{_SERIES[document_type]}-"):
            return None
        self.reserved_number = None
        return number

    @property
    def business_clock(self) -> str:
        """The clock the subscription's timers run on."""
        return self.clock or SYSTEM_CLOCK


async def load(
    conn: asyncpg.Connection | asyncpg.Pool, subscription_id: str, *, lock: bool = False
) -> BillingRecord | None:
    """The subscription's billing record (locked for the transaction with ``lock``)."""
    row = await conn.fetchrow(_LOAD + (" FOR UPDATE" if lock else ""), subscription_id)
    return _record(row) if row is not None else None


_LOAD = (
    "SELECT subscription_id, lifecycle_version, snapshot, state, account_credit, clock, started_on, "
    "charged_through FROM billing.subscriptions WHERE subscription_id = $1"
)


def _record(row: asyncpg.Record, snapshot: ev.SubscriptionSnapshot | None = None) -> BillingRecord:
    state = _json(row["state"])
    return BillingRecord(
        subscription_id=row["subscription_id"],
        lifecycle_version=row["lifecycle_version"],
        snapshot=snapshot or ev.SubscriptionSnapshot.model_validate(_json(row["snapshot"])),
        state=BillingState.model_validate(state) if state else None,
        account_credit=Decimal(row["account_credit"]),
        clock=row["clock"],
        started_on=row["started_on"],
        charged_through=row["charged_through"],
    )


async def load_for_change(
    conn: asyncpg.Connection,
    change: ev.SubscriptionStateChanged,
    customer_id: str,
    currency: str,
    *,
    reserve: str | None = None,
) -> tuple[BillingRecord | None, Decimal, str | None]:
    """:func:`load` with ``lock`` and :func:`customer_credit` with ``lock``, in one round trip.

    Both are locking reads, so each answers the latest committed row even after waiting for it.
    The record carries the change's snapshot (the stored one is replaced by it, so not decoded).
    ``reserve``: a document type whose next number is taken in the same round trip, for a change
    that will most likely issue one (an activation, a renewal); the third value is that number.
    A reserved number the handler does not use goes back with :func:`release_document_number`.
    """
    series = _SERIES[reserve] if reserve else None
    row = await conn.fetchrow(
        f"WITH credit AS ({_lock_credit('$2', '$3')}) "
        "SELECT (SELECT balance FROM credit) AS credit, "
        "CASE WHEN $4::text IS NOT NULL THEN billing.next_document_number($4) END AS reserved, "
        f"s.* FROM (SELECT 1) AS one LEFT JOIN ({_LOAD} FOR UPDATE) AS s ON true",
        change.subscription_id,
        customer_id,
        currency,
        series,
    )
    assert row is not None
    rec = _record(row, change.snapshot) if row["subscription_id"] is not None else None
    reserved = f"{series}-{row['reserved']:08d}" if series and row["reserved"] is not None else None
    return rec, Decimal(row["credit"]), reserved


async def release_document_number(conn: asyncpg.Connection, number: str) -> None:
    """Give back a reserved number nothing was issued under (a queued write).

    The series' lock is held by this transaction since the number was taken, so no later number
    was handed out: the series stays gapless.
    """
    series, _, value = number.rpartition("-")
    await write(
        conn,
        "DELETE FROM billing.document_numbers WHERE series = $1 AND number = $2",
        series,
        int(value),
    )


async def save(conn: asyncpg.Connection, rec: BillingRecord) -> None:
    """Insert or update the record (a queued write, :func:`shared.db.uow.write`)."""
    await write(
        conn,
        "INSERT INTO billing.subscriptions (subscription_id, lifecycle_version, snapshot, state, account_credit, "
        "clock, started_on, charged_through) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (subscription_id) DO UPDATE SET lifecycle_version = EXCLUDED.lifecycle_version, "
        "snapshot = EXCLUDED.snapshot, state = EXCLUDED.state, account_credit = EXCLUDED.account_credit, "
        "clock = EXCLUDED.clock, started_on = EXCLUDED.started_on, charged_through = EXCLUDED.charged_through, "
        "updated_at = now()",
        rec.subscription_id,
        rec.lifecycle_version,
        json_of(rec.snapshot),
        json_of(rec.state) if rec.state else None,
        rec.account_credit,
        rec.clock,
        rec.started_on,
        rec.state.charged_through if rec.state else None,
    )


async def resolve_clock(conn: asyncpg.Connection, snapshot: ev.SubscriptionSnapshot) -> str | None:
    """The subscription's business clock: the snapshot's, else the clock of its lifecycle timers.

    The fallback reads the shared ``timekeeping.timers`` table (the lifecycle sets a renewal
    timer on the subscription's clock before it publishes the activation). None while unknown.
    """
    if snapshot.clock:
        return snapshot.clock
    found = await conn.fetchval(
        "SELECT clock FROM timekeeping.timers WHERE subscription_id = $1 ORDER BY id DESC LIMIT 1",
        snapshot.subscription_id,
    )
    return str(found) if found is not None else None


async def next_document_number(conn: asyncpg.Connection, document_type: str) -> str:
    """Gapless number in the document type's series, held by this transaction until it commits.

    The series' advisory lock (transaction-scoped) serializes issuers; the number is the series'
    highest + 1, read after the lock is granted (``billing.next_document_number``, one round trip).
    """
    series = _SERIES[document_type]
    value = await conn.fetchval("SELECT billing.next_document_number($1)", series)
    return f"{series}-{value:08d}"


# --------------------------------------------------------------------------- documents


@dataclass
class StoredDocument:
    """A numbered document with its collection state."""

    document_number: str
    document_type: str
    subscription_id: str
    status: str
    reason: str | None
    amount_due: Decimal
    currency: str
    due_date: date
    issue_date: date
    attempts: int
    dunning: DunningState | None
    suspended: bool
    document: Document | None
    body: dict[str, Any]


def dunning_to_json(state: DunningState | None, *, suspended: bool) -> dict[str, Any] | None:
    """The dunning run as JSON (plus whether billing suspended the subscription for it)."""
    if state is None:
        return None
    return {
        "failure_count": state.failure_count,
        "first_failed_on": state.first_failed_on.isoformat(),
        "last_failed_on": state.last_failed_on.isoformat(),
        "next_retry_on": state.next_retry_on.isoformat() if state.next_retry_on else None,
        "exhausted": state.exhausted,
        "suspended": suspended,
    }


def _dunning(raw: Any) -> tuple[DunningState | None, bool]:
    data = _json(raw)
    if not data:
        return None, False
    return DunningState(
        failure_count=int(data["failure_count"]),
        first_failed_on=date.fromisoformat(data["first_failed_on"]),
        last_failed_on=date.fromisoformat(data["last_failed_on"]),
        next_retry_on=date.fromisoformat(data["next_retry_on"]) if data.get("next_retry_on") else None,
        exhausted=bool(data.get("exhausted")),
    ), bool(data.get("suspended"))


_DOC_COLUMNS = (
    "document_number, document_type, subscription_id, status, reason, amount_due, currency, due_date, "
    "issue_date, attempts, dunning, document, body"
)


def _stored(row: asyncpg.Record) -> StoredDocument:
    dunning, suspended = _dunning(row["dunning"])
    doc = _json(row["document"])
    return StoredDocument(
        document_number=row["document_number"],
        document_type=row["document_type"],
        subscription_id=row["subscription_id"],
        status=row["status"],
        reason=row["reason"],
        amount_due=Decimal(row["amount_due"]),
        currency=row["currency"],
        due_date=row["due_date"],
        issue_date=row["issue_date"],
        attempts=row["attempts"],
        dunning=dunning,
        suspended=suspended,
        document=Document.model_validate(doc) if doc else None,
        body=_json(row["body"]),
    )


async def document(conn: asyncpg.Connection, number: str, *, lock: bool = False) -> StoredDocument | None:
    """One document by number."""
    row = await conn.fetchrow(
        f"SELECT {_DOC_COLUMNS} FROM billing.documents WHERE document_number = $1"
        + (" FOR UPDATE" if lock else ""),
        number,
    )
    return _stored(row) if row else None


async def documents_of(
    conn: asyncpg.Connection | asyncpg.Pool,
    subscription_id: str,
    *,
    open_only: bool = False,
    lock: bool = False,
) -> list[StoredDocument]:
    """The subscription's documents in issue order (only open invoices with ``open_only``)."""
    rows = await conn.fetch(
        f"SELECT {_DOC_COLUMNS} FROM billing.documents WHERE subscription_id = $1 "
        "AND (NOT $2 OR status = 'open') ORDER BY issue_date, created_at, document_number"
        + (" FOR UPDATE" if lock else ""),
        subscription_id,
        open_only,
    )
    return [_stored(r) for r in rows]


async def insert_document(
    conn: asyncpg.Connection,
    doc: Document,
    contract: ev.InvoiceIssued,
    *,
    customer_id: str,
    status: str,
    reason: str,
    cause_event_id: str,
    lifecycle_version: int | None,
    attempts: int,
) -> None:
    """Store a numbered document: the published contract and the domain document (a queued write)."""
    await write(
        conn,
        "INSERT INTO billing.documents (document_number, document_type, subscription_id, customer_id, currency, "
        "issue_date, due_date, subtotal, tax, total, amount_due, status, body, cause_event_id, reason, document, "
        "lifecycle_version, attempts, paid_on) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
        "$15, $16, $17, $18, $19)",
        contract.document_number,
        doc.document_type,
        doc.subscription_id,
        customer_id,
        doc.currency,
        doc.issue_date,
        doc.due_date,
        doc.subtotal,
        doc.tax,
        doc.total,
        doc.amount_due,
        status,
        json_of(contract),
        cause_event_id,
        reason,
        json_of(doc),
        lifecycle_version,
        attempts,
        doc.issue_date if status == "paid" else None,
    )


async def update_collection(
    conn: asyncpg.Connection,
    number: str,
    *,
    status: str | None = None,
    attempts: int | None = None,
    dunning: DunningState | None = None,
    suspended: bool = False,
    clear_dunning: bool = False,
    paid_on: date | None = None,
) -> None:
    """Record a payment attempt's consequences on the document."""
    await conn.execute(
        "UPDATE billing.documents SET status = COALESCE($2, status), attempts = COALESCE($3, attempts), "
        "dunning = CASE WHEN $4 THEN NULL WHEN $5::jsonb IS NULL THEN dunning ELSE $5::jsonb END, "
        "paid_on = COALESCE($6, paid_on) WHERE document_number = $1",
        number,
        status,
        attempts,
        clear_dunning,
        dunning_to_json(dunning, suspended=suspended),
        paid_on,
    )


# --------------------------------------------------------------------------- customer credit


def _lock_credit(customer: str, currency: str) -> str:
    """The statement that creates or locks a customer's credit row and answers its balance (the
    upsert takes the row lock and returns the latest committed balance); its parameters by number."""
    return (
        f"INSERT INTO billing.customer_credit AS c (customer_id, currency) VALUES ({customer}, {currency}) "
        "ON CONFLICT (customer_id, currency) DO UPDATE SET balance = c.balance RETURNING balance"
    )


async def customer_credit(
    conn: asyncpg.Connection | asyncpg.Pool, customer_id: str, currency: str, *, lock: bool = False
) -> Decimal:
    """The customer's account credit in ``currency`` (the row is created and locked with ``lock``,
    in one statement: a plain ``SELECT ... FOR UPDATE`` needs the row to exist first)."""
    if lock:
        value = await conn.fetchval(_lock_credit("$1", "$2"), customer_id, currency)
    else:
        value = await conn.fetchval(
            "SELECT balance FROM billing.customer_credit WHERE customer_id = $1 AND currency = $2",
            customer_id,
            currency,
        )
    return Decimal(value) if value is not None else Decimal(0)


async def record_credit_movement(
    conn: asyncpg.Connection,
    *,
    customer_id: str,
    currency: str,
    kind: str,
    amount: Decimal,
    balance_after: Decimal,
    subscription_id: str,
    document_number: str,
    business_date: date,
) -> None:
    """One movement of the customer's credit, and the balance it leaves.

    Run at once, not queued: two movements of one customer in one handler update the balance row
    twice, which one combined statement cannot do.
    """
    await conn.execute(
        "INSERT INTO billing.credit_movements (customer_id, currency, kind, amount, balance_after, "
        "subscription_id, document_number, business_date) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        customer_id,
        currency,
        kind,
        amount,
        balance_after,
        subscription_id,
        document_number,
        business_date,
    )
    await conn.execute(
        "UPDATE billing.customer_credit SET balance = $3, updated_at = now() "
        "WHERE customer_id = $1 AND currency = $2",
        customer_id,
        currency,
        balance_after,
    )
