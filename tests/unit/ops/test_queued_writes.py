"""Queued writes of a handler run as one statement: parameters renumbered, each write a CTE."""

from __future__ import annotations

from shared.db.uow import combined


def test_one_write_runs_as_written() -> None:
    sql, args = combined([("UPDATE t SET a = $1 WHERE id = $2", (1, "x"))])
    assert (sql, args) == ("UPDATE t SET a = $1 WHERE id = $2", [1, "x"])


def test_several_writes_become_one_statement_with_their_parameters_renumbered_in_order() -> None:
    sql, args = combined(
        [
            ("INSERT INTO a (x, y) VALUES ($1, $2)", ("x1", "y1")),
            ("UPDATE b SET v = $2 WHERE k = $1 AND w = $2", ("k", "v")),
            ("INSERT INTO c SELECT * FROM unnest($1::text[], $10::int[])", (["p"], *range(8), [1])),
        ]
    )
    assert sql == (
        "WITH w0 AS (INSERT INTO a (x, y) VALUES ($1, $2) RETURNING 1), "
        "w1 AS (UPDATE b SET v = $4 WHERE k = $3 AND w = $4 RETURNING 1), "
        "w2 AS (INSERT INTO c SELECT * FROM unnest($5::text[], $14::int[]) RETURNING 1) SELECT 1"
    )
    assert args == ["x1", "y1", "k", "v", ["p"], *range(8), [1]]
