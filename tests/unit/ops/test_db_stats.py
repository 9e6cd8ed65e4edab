"""``som bench --db-stats``: pg_stat_statements rows summarised per order."""

from __future__ import annotations

from typing import Any

from shared.db.statement_stats import shorten, summarize, tables


def _row(query: str, calls: int, total_ms: float, *, wal: int = 0, buffers: int = 0) -> dict[str, Any]:
    return {
        "query": query,
        "calls": calls,
        "total_exec_time": total_ms,
        "max_exec_time": total_ms / max(1, calls) * 3,
        "wal_records": wal,
        "wal_bytes": wal * 100,
        "buffers": buffers,
    }


def test_figures_are_per_order_and_the_heaviest_statement_comes_first() -> None:
    rows = [
        _row("INSERT INTO messaging.inbox  (a)\n VALUES ($1)", 200, 40.0, wal=400, buffers=1000),
        _row("WITH lock AS (SELECT 1) DELETE FROM messaging.outbox", 5, 900.0, wal=50, buffers=500_000),
        _row("UPDATE billing.subscriptions SET x = $1", 100, 20.0, wal=300),
    ]
    figures = summarize(rows, 100, top=2)
    assert figures["statements_per_order"] == 3.05
    assert figures["exec_ms_per_order"] == 9.6
    assert figures["wal_records_per_order"] == 7.5
    assert figures["buffer_hits_per_order"] == 5010.0
    assert [t["query"][:9] for t in figures["top"]] == ["WITH lock", "INSERT IN"]
    relay = figures["top"][0]
    assert relay["mean_ms"] == 180.0
    assert relay["ms_per_order"] == 9.0
    assert relay["buffer_hits_per_call"] == 100_000.0
    assert figures["top"][1]["query"] == "INSERT INTO messaging.inbox (a) VALUES ($1)"


def test_the_measuring_statements_and_bare_transaction_control_are_left_out() -> None:
    rows = [
        _row("SELECT pg_stat_statements_reset()", 1, 5.0),
        _row("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", 1, 20.0),
        _row("BEGIN", 50, 0.1),
        _row("SELECT $1", 10, 0.1),
        _row("SELECT balance FROM billing.customer_credit WHERE customer_id = $1", 10, 1.0),
    ]
    figures = summarize(rows, 10)
    assert figures["statements_per_order"] == 1.0
    assert [t["query"] for t in figures["top"]] == [
        "SELECT balance FROM billing.customer_credit WHERE customer_id = $1"
    ]


def test_a_run_without_orders_divides_by_one_not_zero() -> None:
    assert summarize([_row("SELECT now()", 4, 2.0)], 0)["statements_per_order"] == 4.0


def test_long_statements_are_cut_to_one_line() -> None:
    text = shorten("SELECT\n" + "x, " * 100, width=40)
    assert len(text) == 40 and text.endswith("…") and "\n" not in text


def test_tables_are_per_order_most_rows_written_first() -> None:
    rows = [
        {
            "table": "lifecycle.audit_trail",
            "inserted": 100,
            "updated": 0,
            "deleted": 0,
            "indexes": 2,
            "unscanned": ["audit_trail_by_subscription"],
        },
        {
            "table": "messaging.outbox",
            "inserted": 650,
            "updated": 0,
            "deleted": 600,
            "indexes": 1,
            "unscanned": [],
        },
        {
            "table": "lifecycle.subscriptions",
            "inserted": 100,
            "updated": 50,
            "deleted": 0,
            "indexes": 7,
            "unscanned": ["subscriptions_by_recency"],
        },
        {
            "table": "intake.orders",
            "inserted": 100,
            "updated": 0,
            "deleted": 0,
            "indexes": 2,
            "unscanned": [],
        },
    ]
    figures = tables(rows, 100)
    assert [t["table"] for t in figures] == [
        "messaging.outbox",
        "lifecycle.subscriptions",
        "intake.orders",  # a tie goes by name
        "lifecycle.audit_trail",
    ]
    outbox, subscriptions = figures[0], figures[1]
    assert (outbox["inserted_per_order"], outbox["deleted_per_order"]) == (6.5, 6.0)
    assert subscriptions["updated_per_order"] == 0.5
    assert subscriptions["indexes"] == 7 and subscriptions["unscanned_indexes"] == [
        "subscriptions_by_recency"
    ]
