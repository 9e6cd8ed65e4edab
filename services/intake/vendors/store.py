"""SQL of the outbound fulfilment: pending vendor calls, what intake knows of a subscription."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.intake.domain.fulfilment import VendorCall


async def channel_subscription(conn: asyncpg.Connection, channel: str, subscription_id: str) -> str | None:
    """The channel's current id of an internal subscription (the one no other id replaced)."""
    value = await conn.fetchval(
        "SELECT channel_subscription_id FROM intake.channel_subscriptions "
        "WHERE channel = $1 AND subscription_id = $2 ORDER BY (replaced_by IS NULL) DESC, created_at DESC "
        "LIMIT 1",
        channel,
        subscription_id,
    )
    return str(value) if value is not None else None


def _canonical(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    loaded = json.loads(raw) if isinstance(raw, str) else raw
    return dict(loaded) if isinstance(loaded, dict) else None


async def order(conn: asyncpg.Connection, channel: str, order_key: str) -> dict[str, Any] | None:
    """The canonical change of one recorded channel order."""
    raw = await conn.fetchval(
        "SELECT canonical FROM intake.orders WHERE channel = $1 AND order_key = $2", channel, order_key
    )
    return _canonical(raw)


async def origin(conn: asyncpg.Connection, channel: str, subscription_id: str) -> dict[str, Any] | None:
    """The channel order that created the subscription (its first ``create``)."""
    raw = await conn.fetchval(
        "SELECT canonical FROM intake.orders WHERE channel = $1 AND subscription_id = $2 AND action = 'create' "
        "ORDER BY received_at LIMIT 1",
        channel,
        subscription_id,
    )
    return _canonical(raw)


async def stackit_snapshot(
    conn: asyncpg.Connection, namespace: str, subscription_id: str
) -> dict[str, Any] | None:
    """The last polled snapshot of a STACKIT subscription (for its approval deadline)."""
    raw = await conn.fetchval(
        "SELECT snapshot FROM intake.stackit_snapshots WHERE namespace = $1 AND subscription_id = $2 LIMIT 1",
        namespace,
        subscription_id,
    )
    return _canonical(raw)


async def record_calls(conn: asyncpg.Connection, namespace: str, calls: Sequence[VendorCall]) -> int:
    """Record pending calls; one already recorded for its (channel, operation, action) is kept as is."""
    recorded = 0
    for c in calls:
        status = await conn.execute(
            "INSERT INTO intake.vendor_calls (namespace, channel, operation_id, action, subscription_id, "
            "channel_subscription_id, body, deadline) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) "
            "ON CONFLICT (namespace, channel, operation_id, action) DO NOTHING",
            namespace,
            c.channel,
            c.operation_id,
            c.action,
            c.subscription_id,
            c.channel_subscription_id,
            dict(c.body),
            c.deadline,
        )
        recorded += int(str(status).endswith(" 1"))
    return recorded


async def claim_due(
    pool: asyncpg.Pool, namespace: str, *, lease_seconds: float, limit: int = 50
) -> list[asyncpg.Record]:
    """Take due calls (pending and due, or in flight longer than the lease): committed before any call.

    ``was`` in each row is the state before the claim: ``in_flight`` means a previous maker may have
    reached the vendor and died before recording it.
    """
    return list(
        await pool.fetch(
            "WITH due AS (SELECT id, state AS was FROM intake.vendor_calls WHERE namespace = $1 AND ("
            "  (state = 'pending' AND next_attempt_at <= now()) OR "
            "  (state = 'in_flight' AND claimed_at <= now() - make_interval(secs => $2))) "
            " ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) "
            "UPDATE intake.vendor_calls v SET state = 'in_flight', claimed_at = now(), attempts = v.attempts + 1 "
            "FROM due WHERE v.id = due.id RETURNING v.*, due.was",
            namespace,
            lease_seconds,
            limit,
        )
    )


async def finish(
    conn: asyncpg.Connection | asyncpg.Pool,
    call_id: int,
    state: str,
    *,
    response: Any = None,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> bool:
    """Record the outcome of a claimed call (only while it is still in flight: a takeover wins)."""
    status = await conn.execute(
        "UPDATE intake.vendor_calls SET state = $2, response = COALESCE($3::jsonb, response), last_error = $4, "
        "acked_at = CASE WHEN $2 = 'acked' THEN now() ELSE acked_at END, "
        "next_attempt_at = COALESCE($5, next_attempt_at) WHERE id = $1 AND state = 'in_flight'",
        call_id,
        state,
        response,
        error,
        retry_at,
    )
    return str(status).endswith(" 1")


def as_call(row: asyncpg.Record) -> VendorCall:
    """A claimed row as the call it records."""
    body = row["body"]
    return VendorCall(
        channel=row["channel"],
        operation_id=row["operation_id"],
        action=row["action"],
        subscription_id=row["subscription_id"],
        channel_subscription_id=row["channel_subscription_id"],
        body=json.loads(body) if isinstance(body, str) else dict(body or {}),
        deadline=row["deadline"],
    )
