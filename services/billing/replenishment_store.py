"""What billing keeps about replenishment subscriptions and the SKU price list (schema ``billing``)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import asyncpg

from services.billing.domain.replenishment import PriceListEntry, ReplenishmentState
from shared.db.pool import json_of


async def load(
    conn: asyncpg.Connection | asyncpg.Pool, subscription_id: str, *, lock: bool = False
) -> ReplenishmentState | None:
    """The replenishment state of a subscription (locked for the transaction with ``lock``)."""
    sql = "SELECT state FROM billing.replenishments WHERE subscription_id = $1"
    value = await conn.fetchval(sql + (" FOR UPDATE" if lock else ""), subscription_id)
    if value is None:
        return None
    return ReplenishmentState.model_validate(json.loads(value) if isinstance(value, str) else value)


async def save(conn: asyncpg.Connection, state: ReplenishmentState) -> None:
    """Insert or replace the state."""
    await conn.execute(
        "INSERT INTO billing.replenishments (subscription_id, customer_id, state) VALUES ($1, $2, $3) "
        "ON CONFLICT (subscription_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
        state.subscription_id,
        state.customer_id,
        json_of(state),
    )


async def record_price(
    conn: asyncpg.Connection,
    *,
    sku: str,
    currency: str,
    unit_amount: Decimal,
    effective_at: datetime,
    event_id: str,
) -> None:
    """Keep a price-list entry; the same SKU, currency and effective time again replaces its amount."""
    await conn.execute(
        "INSERT INTO billing.price_list (sku, currency, effective_at, unit_amount, event_id) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sku, currency, effective_at) "
        "DO UPDATE SET unit_amount = EXCLUDED.unit_amount, event_id = EXCLUDED.event_id, recorded_at = now()",
        sku,
        currency,
        effective_at,
        unit_amount,
        event_id,
    )


async def price_list(
    conn: asyncpg.Connection | asyncpg.Pool, sku: str, currency: str, at: datetime
) -> list[PriceListEntry]:
    """The entry of ``sku`` in force at ``at`` (a list of at most one)."""
    row = await conn.fetchrow(
        "SELECT unit_amount, effective_at FROM billing.price_list WHERE sku = $1 AND currency = $2 "
        "AND effective_at <= $3 ORDER BY effective_at DESC LIMIT 1",
        sku,
        currency,
        at,
    )
    if row is None:
        return []
    return [PriceListEntry(sku, currency, Decimal(row["unit_amount"]), row["effective_at"])]
