"""Read-only queries on the ``billing`` schema for operators' tools (``som billing documents``)."""

from __future__ import annotations

from typing import Any

import asyncpg


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
