"""What the database did per unit of work, statement by statement (``som bench --db-stats``).

Read from ``pg_stat_statements`` (reset when the measured run starts): how many statements an
order costs, their execution time, the WAL they write, the shared buffers they touch, and the
heaviest statements. From the cumulative statistics (reset with them): the rows each table got
per order, and which of its non-unique indexes every insert maintained while no statement of the
run read through them. A CPU profile of PostgreSQL is flat (no function above 2 %), so a statement
that misbehaves, like a plan that re-runs a subquery for every row of a queue table, shows here
and nowhere else.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import asyncpg

EXTENSION = "pg_stat_statements"
# Leave out what the measuring itself runs (the reset, this read) and the pool's own chatter.
_OWN = re.compile(
    r"pg_stat_statements|pg_stat_reset|pg_stat_user_tables|^(BEGIN|COMMIT|ROLLBACK|SELECT \$1)$",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")


class StatementFigures(TypedDict):
    """One statement shape of the run (pg_stat_statements normalises its parameters)."""

    calls_per_order: float
    mean_ms: float
    max_ms: float
    ms_per_order: float
    wal_records_per_call: float
    buffer_hits_per_call: float
    query: str


class TableFigures(TypedDict):
    """One table's row writes of the run, per order, and the indexes each insert also writes."""

    table: str
    inserted_per_order: float
    updated_per_order: float
    deleted_per_order: float
    indexes: int
    unscanned_indexes: list[str]


class DatabaseFigures(TypedDict, total=False):
    """The run's statements per order, the heaviest of them, and the tables written most."""

    statements_per_order: float
    exec_ms_per_order: float
    wal_records_per_order: float
    wal_kb_per_order: float
    buffer_hits_per_order: float
    top: list[StatementFigures]
    tables: list[TableFigures]


class StatsUnavailable(Exception):
    """The database does not load pg_stat_statements (an external server without it preloaded)."""


async def reset(conn: asyncpg.Connection) -> bool:
    """Start counting now (the extension is created if the server loads the library).

    Returns whether the table and index counters were reset too: that takes a superuser (or a
    grant on ``pg_stat_reset``), which an external server may not give the project's role.
    """
    try:
        await conn.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
        await conn.execute("SELECT pg_stat_statements_reset()")
    except asyncpg.PostgresError as exc:
        raise StatsUnavailable(
            f"{EXTENSION} is not loaded by this server ({exc}); the embedded database loads it with --db-stats"
        ) from exc
    # Table and index counters too: which tables an order writes, and which of their indexes
    # every insert maintains although no statement of the run read through them.
    try:
        await conn.execute("SELECT pg_stat_reset()")
    except asyncpg.InsufficientPrivilegeError:
        return False
    return True


_READ = (
    "SELECT s.query, s.calls, s.total_exec_time, s.max_exec_time, s.wal_records, s.wal_bytes, "
    "s.shared_blks_hit + s.shared_blks_read AS buffers "
    "FROM pg_stat_statements s WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


# Unique indexes enforce a rule on every insert, so "not scanned" is only a finding for the others.
_TABLES = (
    "SELECT t.schemaname || '.' || t.relname AS table, t.n_tup_ins AS inserted, t.n_tup_upd AS updated, "
    "t.n_tup_del AS deleted, count(i.indexrelid) AS indexes, "
    "coalesce(array_agg(i.indexrelname ORDER BY i.indexrelname) FILTER (WHERE i.idx_scan = 0 "
    "AND NOT x.indisunique), '{}') AS unscanned "
    "FROM pg_stat_user_tables t LEFT JOIN pg_stat_user_indexes i ON i.relid = t.relid "
    "LEFT JOIN pg_index x ON x.indexrelid = i.indexrelid "
    "WHERE t.n_tup_ins + t.n_tup_upd + t.n_tup_del > 0 "
    "GROUP BY t.schemaname, t.relname, t.n_tup_ins, t.n_tup_upd, t.n_tup_del"
)


# A backend reports its table counters at most once a second, and one that went idle only after
# 10 s (PostgreSQL's PGSTAT_IDLE_INTERVAL): read sooner, the last second of every worker's pooled
# connections is missing (0.92 rows a table per order instead of 1.0 in a 3,000-order run).
TABLE_COUNTERS_LAG_SECONDS = 11.0


async def read(
    conn: asyncpg.Connection,
    orders: int,
    *,
    top: int = 10,
    settle_seconds: float = TABLE_COUNTERS_LAG_SECONDS,
    with_tables: bool = True,
) -> DatabaseFigures:
    """The figures since :func:`reset`, per order of a run of ``orders``.

    The statement figures are read at once; the table figures (unless ``with_tables`` is False:
    :func:`reset` could not reset their counters) after ``settle_seconds``, once every backend has
    reported what it wrote.
    """
    figures = summarize([dict(r) for r in await conn.fetch(_READ)], orders, top=top)
    if not with_tables:
        return figures
    await asyncio.sleep(settle_seconds)
    figures["tables"] = tables([dict(r) for r in await conn.fetch(_TABLES)], orders)
    return figures


def tables(rows: Sequence[Mapping[str, Any]], orders: int) -> list[TableFigures]:
    """Tables by rows written per order, most first."""
    per = max(1, orders)
    figures = [
        TableFigures(
            table=str(r["table"]),
            inserted_per_order=round(int(r["inserted"]) / per, 2),
            updated_per_order=round(int(r["updated"]) / per, 2),
            deleted_per_order=round(int(r["deleted"]) / per, 2),
            indexes=int(r["indexes"]),
            unscanned_indexes=list(r["unscanned"]),
        )
        for r in rows
    ]
    return sorted(
        figures,
        key=lambda t: (
            -(t["inserted_per_order"] + t["updated_per_order"] + t["deleted_per_order"]),
            t["table"],
        ),
    )


def summarize(rows: Sequence[Mapping[str, Any]], orders: int, *, top: int = 10) -> DatabaseFigures:
    """Per-order figures of ``pg_stat_statements`` rows, with the ``top`` statements by execution time."""
    per = max(1, orders)
    mine = [r for r in rows if not _OWN.search(_SPACE.sub(" ", str(r["query"])).strip())]
    calls = sum(int(r["calls"]) for r in mine)
    heaviest = sorted(mine, key=lambda r: float(r["total_exec_time"]), reverse=True)[:top]
    return DatabaseFigures(
        statements_per_order=round(calls / per, 2),
        exec_ms_per_order=round(sum(float(r["total_exec_time"]) for r in mine) / per, 3),
        wal_records_per_order=round(sum(int(r["wal_records"]) for r in mine) / per, 1),
        wal_kb_per_order=round(sum(int(r["wal_bytes"]) for r in mine) / per / 1024, 1),
        buffer_hits_per_order=round(sum(int(r["buffers"]) for r in mine) / per, 1),
        top=[_statement(r, per) for r in heaviest],
    )


def _statement(row: Mapping[str, Any], orders: int) -> StatementFigures:
    calls = max(1, int(row["calls"]))
    total = float(row["total_exec_time"])
    return StatementFigures(
        calls_per_order=round(int(row["calls"]) / orders, 3),
        mean_ms=round(total / calls, 3),
        max_ms=round(float(row["max_exec_time"]), 1),
        ms_per_order=round(total / orders, 3),
        wal_records_per_call=round(int(row["wal_records"]) / calls, 1),
        buffer_hits_per_call=round(int(row["buffers"]) / calls, 1),
        query=shorten(str(row["query"])),
    )


def shorten(query: str, width: int = 140) -> str:
    """One line of a statement, enough to recognise it."""
    line = _SPACE.sub(" ", query).strip()
    return line if len(line) <= width else f"{line[: width - 1]}…"
