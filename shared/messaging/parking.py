"""Parked keys: while a message of a key waits in the retry topic, later messages of that key follow it.

The count of outstanding messages per (group, topic, key) lives in PostgreSQL and changes in the
same transaction as the work it describes, so every replica of a worker sees the same parked keys
(checked once per batch) and a crash never leaves a count that disagrees with what committed.
"""

from __future__ import annotations

from collections import Counter

import asyncpg

# Parked keys of group $1 among the (topic, key) pairs zipped from $4 and $5: a batch reads them in
# the statement that claims its inbox rows (shared.messaging.lanes), once per transaction.
PARKED_AMONG = (
    "SELECT p.topic, p.key FROM messaging.parked_keys p "
    "JOIN unnest($4::text[], $5::text[]) AS b(topic, key) ON p.topic = b.topic AND p.key = b.key "
    "WHERE p.consumer_group = $1 AND p.outstanding > 0"
)


async def park(conn: asyncpg.Connection, group: str, topic: str, keys: list[str]) -> None:
    """Count one more outstanding message for each key in ``keys`` (repeats count twice)."""
    counts = Counter(keys)
    if not counts:
        return
    await conn.execute(
        "INSERT INTO messaging.parked_keys (consumer_group, topic, key, outstanding) "
        "SELECT $1, $2, k, n FROM unnest($3::text[], $4::int[]) AS t(k, n) "
        "ON CONFLICT (consumer_group, topic, key) "
        "DO UPDATE SET outstanding = messaging.parked_keys.outstanding + EXCLUDED.outstanding",
        group,
        topic,
        list(counts),
        list(counts.values()),
    )


async def release(conn: asyncpg.Connection, group: str, topic: str, key: str) -> None:
    """One message of ``key`` left the retry topic (processed or dead-lettered)."""
    await conn.execute(
        "WITH dec AS (UPDATE messaging.parked_keys SET outstanding = outstanding - 1 "
        "WHERE consumer_group = $1 AND topic = $2 AND key = $3 AND outstanding > 1 RETURNING 1) "
        "DELETE FROM messaging.parked_keys WHERE consumer_group = $1 AND topic = $2 AND key = $3 "
        "AND NOT EXISTS (SELECT 1 FROM dec)",
        group,
        topic,
        key,
    )


async def parked_keys(pool: asyncpg.Pool | asyncpg.Connection, group: str) -> dict[tuple[str, str], int]:
    """Every parked key of ``group`` with its outstanding count (health, tests, operators)."""
    rows = await pool.fetch(
        "SELECT topic, key, outstanding FROM messaging.parked_keys WHERE consumer_group = $1", group
    )
    return {(r["topic"], r["key"]): r["outstanding"] for r in rows}
