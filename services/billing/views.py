"""Read-only queries on the ``billing`` schema for operators' tools (``som billing documents``, ``export``)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import asyncpg

from shared.messaging import topics


async def documents(pool: asyncpg.Pool, subscription_id: str) -> list[dict[str, Any]]:
    """Invoices and credit notes of a subscription with their collection status, in issue order."""
    rows = await pool.fetch(
        "SELECT document_number, document_type, reason, issue_date, due_date, total, amount_due, currency, "
        "status, attempts, dunning, paid_on FROM billing.documents WHERE subscription_id = $1 "
        "ORDER BY issue_date, created_at, document_number",
        subscription_id,
    )
    return [dict(r) for r in rows]


async def invoice_counts(pool: asyncpg.Pool, subscription_ids: list[str]) -> dict[str, int]:
    """How many invoices each of ``subscription_ids`` has."""
    rows = await pool.fetch(
        "SELECT subscription_id, count(*) AS n FROM billing.documents WHERE document_type = 'invoice' "
        "AND subscription_id = ANY($1::text[]) GROUP BY subscription_id",
        sorted(subscription_ids),
    )
    return {str(r["subscription_id"]): int(r["n"]) for r in rows}


async def invoice_numbers(pool: asyncpg.Pool) -> list[str]:
    """Every invoice number issued (for the gapless check)."""
    rows = await pool.fetch(
        "SELECT document_number FROM billing.documents WHERE document_number LIKE 'INV-%'"
    )
    return [str(r["document_number"]) for r in rows]


async def export_documents(
    pool: asyncpg.Pool,
    start: date,
    end: date,
    *,
    subscription_id: str | None = None,
    include_test: bool = False,
) -> list[dict[str, Any]]:
    """Invoices and credit notes issued from ``start`` to ``end`` (both included), in number order
    within each issue date; test-clock documents only with ``include_test``."""
    rows = await pool.fetch(
        "SELECT document_number, document_type, reason, subscription_id, customer_id, issue_date, due_date, "
        "currency, subtotal, tax, total, (body->>'credits_applied')::numeric AS credits_applied, amount_due, "
        "status, coalesce((body->>'test')::boolean, false) AS test FROM billing.documents "
        "WHERE issue_date BETWEEN $1 AND $2 AND ($3::text IS NULL OR subscription_id = $3) "
        "AND ($4 OR NOT coalesce((body->>'test')::boolean, false)) "
        "ORDER BY issue_date, document_type, length(document_number), document_number",
        start,
        end,
        subscription_id,
        include_test,
    )
    return [dict(r) for r in rows]


async def customer_documents(pool: asyncpg.Pool, customer_id: str) -> list[dict[str, Any]]:
    """Invoices and credit notes of a customer, newest first."""
    rows = await pool.fetch(
        "SELECT document_number, document_type, subscription_id, issue_date, due_date, total, amount_due, "
        "currency, status FROM billing.documents WHERE customer_id = $1 "
        "ORDER BY issue_date DESC, document_number DESC LIMIT 500",
        customer_id,
    )
    return [dict(r) for r in rows]


async def export_journal(
    pool: asyncpg.Pool,
    service: str,
    start: date,
    end: date,
    *,
    subscription_id: str | None = None,
    include_test: bool = False,
) -> list[dict[str, Any]]:
    """Journal entries posted on ``accounting.journal`` (their timers fired) dated ``start`` to ``end``,
    as ``JournalEntryPosted`` payloads, in posting order. ``service``: billing's namespaced name."""
    rows = await pool.fetch(
        "SELECT payload FROM timekeeping.timers WHERE service = $1 AND topic = $2 AND fired_at IS NOT NULL "
        "AND cancelled_at IS NULL AND (payload->>'entry_date')::date BETWEEN $3 AND $4 "
        "AND ($5::text IS NULL OR subscription_id = $5) "
        "AND ($6 OR NOT coalesce((payload->>'test')::boolean, false)) "
        "ORDER BY (payload->>'entry_date')::date, due_at, id",
        service,
        topics.ACCOUNTING_JOURNAL,
        start,
        end,
        subscription_id,
        include_test,
    )
    return [json.loads(r["payload"]) if isinstance(r["payload"], str) else dict(r["payload"]) for r in rows]


async def renewal_payment_outcomes(pool: asyncpg.Pool, *, since_hours: float = 24.0) -> dict[str, int]:
    """Results of renewal invoices' payments recorded in the last ``since_hours``, by outcome."""
    rows = await pool.fetch(
        "SELECT a.outcome, count(*) AS n FROM billing.payment_attempts a "
        "JOIN billing.documents d ON d.document_number = a.document_number "
        "WHERE d.reason = 'renewal' AND a.recorded_at > now() - make_interval(secs => $1) GROUP BY a.outcome",
        since_hours * 3600,
    )
    return {str(r["outcome"]): int(r["n"]) for r in rows}


async def customer_balance(pool: asyncpg.Pool, customer_id: str) -> list[dict[str, Any]]:
    """The customer's account credit per currency, each with its movements in order."""
    balances = await pool.fetch(
        "SELECT currency, balance FROM billing.customer_credit WHERE customer_id = $1 ORDER BY currency",
        customer_id,
    )
    moves = await pool.fetch(
        "SELECT currency, kind, amount, balance_after, subscription_id, document_number, business_date "
        "FROM billing.credit_movements WHERE customer_id = $1 ORDER BY id",
        customer_id,
    )
    return [
        {
            "currency": b["currency"],
            "balance": b["balance"],
            "movements": [dict(m) for m in moves if m["currency"] == b["currency"]],
        }
        for b in balances
    ]
