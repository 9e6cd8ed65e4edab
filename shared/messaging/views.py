"""Queries operators' tools run on the ``messaging`` schema (inbox, DLQ replays)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


async def seen_event_ids(pool: asyncpg.Pool, consumer_group: str, event_ids: Sequence[str]) -> set[str]:
    """Which of ``event_ids`` the consumer group has processed already (its inbox holds them)."""
    rows = await pool.fetch(
        "SELECT event_id FROM messaging.inbox WHERE consumer_group = $1 AND event_id = ANY($2::text[])",
        consumer_group,
        list(event_ids),
    )
    return {r["event_id"] for r in rows}


async def replayed_dead_letters(pool: asyncpg.Pool) -> tuple[set[tuple[str, int, int]], set[str]]:
    """``(dlq topic, partition, offset)`` of every dead letter replayed so far, and their origins."""
    rows = await pool.fetch("SELECT dlq_topic, dlq_partition, dlq_offset, origin FROM messaging.dlq_replays")
    records = {(r["dlq_topic"], r["dlq_partition"], r["dlq_offset"]) for r in rows}
    return records, {r["origin"] for r in rows if r["origin"] is not None}


async def record_replay(
    conn: asyncpg.Connection,
    dlq_topic: str,
    partition: int,
    offset: int,
    replayed_to: str,
    origin: str | None = None,
) -> bool:
    """Record a replay in the caller's transaction; False when the record, or another copy of the
    same failed message (same ``origin``), was replayed before."""
    inserted = await conn.fetchval(
        "INSERT INTO messaging.dlq_replays (dlq_topic, dlq_partition, dlq_offset, replayed_to, origin) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
        dlq_topic,
        partition,
        offset,
        replayed_to,
        origin,
    )
    return bool(inserted)


async def outbox_backlog(pool: asyncpg.Pool) -> dict[str, object]:
    """Events committed but not yet published: how many, and the oldest one's age in seconds."""
    row = await pool.fetchrow(
        "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS oldest_seconds "
        "FROM messaging.outbox"
    )
    assert row is not None
    oldest = row["oldest_seconds"]
    return {"rows": int(row["n"]), "oldest_seconds": float(oldest) if oldest is not None else None}
