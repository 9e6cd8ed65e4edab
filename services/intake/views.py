"""Read-only queries on the ``intake`` schema for operators' tools (failures, batch outcomes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg


async def recent_rejections(pool: asyncpg.Pool, *, top: int, since_hours: float) -> list[dict[str, Any]]:
    """The ``top`` rejections of the last ``since_hours`` by impact, then most recent."""
    rows = await pool.fetch(
        "SELECT channel, channel_subscription_id, channel_event_id, reasons, impact_score, order_value, "
        "currency, received_at FROM intake.rejections WHERE received_at > now() - make_interval(secs => $2) "
        "ORDER BY impact_score DESC, received_at DESC LIMIT $1",
        top,
        since_hours * 3600,
    )
    return [dict(r) for r in rows]


async def accepted_order_keys(pool: asyncpg.Pool, channel: str, order_keys: Sequence[str]) -> set[str]:
    """Which of ``order_keys`` intake accepted on ``channel`` (an accepted order has a row)."""
    rows = await pool.fetch(
        "SELECT order_key FROM intake.orders WHERE channel = $1 AND order_key = ANY($2::text[])",
        channel,
        list(order_keys),
    )
    return {r["order_key"] for r in rows}


async def latest_rejection_reasons(
    pool: asyncpg.Pool, channel: str, channel_event_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The reasons of the latest rejection of each of ``channel_event_ids`` that was rejected."""
    rows = await pool.fetch(
        "SELECT DISTINCT ON (channel_event_id) channel_event_id, reasons FROM intake.rejections "
        "WHERE channel = $1 AND channel_event_id = ANY($2::text[]) ORDER BY channel_event_id, id DESC",
        channel,
        list(channel_event_ids),
    )
    return {r["channel_event_id"]: list(r["reasons"]) for r in rows}


async def orders_since(pool: asyncpg.Pool, *, seconds: float) -> int:
    """Orders accepted in the last ``seconds``."""
    value = await pool.fetchval(
        "SELECT count(*) FROM intake.orders WHERE received_at > now() - make_interval(secs => $1)", seconds
    )
    return int(value or 0)


async def rejections_by_channel(
    pool: asyncpg.Pool, *, top: int, since_hours: float
) -> dict[str, list[dict[str, Any]]]:
    """Per channel, its ``top`` rejections of the last ``since_hours`` by impact, then most recent."""
    rows = await pool.fetch(
        "SELECT * FROM (SELECT channel, channel_subscription_id, channel_event_id, reasons, impact_score, "
        "order_value, currency, received_at, row_number() OVER (PARTITION BY channel "
        "ORDER BY impact_score DESC, received_at DESC) AS rank FROM intake.rejections "
        "WHERE received_at > now() - make_interval(secs => $2)) ranked WHERE rank <= $1 "
        "ORDER BY channel, rank",
        top,
        since_hours * 3600,
    )
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        grouped.setdefault(str(r["channel"]), []).append(dict(r))
    return grouped
