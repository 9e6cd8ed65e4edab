"""What one statement's round trip costs in CPU, against the same work done for many keys at once.

A handler that reads its subscription with one statement per message pays a round trip per
message: asyncpg building and parsing the messages on the worker's side, the backend's protocol,
executor start-up and lock bookkeeping on the server's. This measures both sides on an embedded
PostgreSQL (its own, ephemeral), on uvloop as the workers run:

- ``per key``: one locking point lookup per key, each its own round trip;
- ``batched``: the same keys locked and read ``--batch`` at a time with ``= ANY($1)``.

It prints the client's and the backend's CPU per key (from ``/proc`` through psutil) and the wall
time. The difference is what a batch-level read (one statement per batch instead of one per
message) could save per statement removed.

    .venv/bin/python tools/db_roundtrip.py [--keys 20000] [--batch 100] [--json]

A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg
import psutil
import uvloop

from som.embedded import EmbeddedPostgres

_ONE = "SELECT v FROM roundtrip WHERE id = $1 FOR UPDATE"
_MANY = "SELECT id, v FROM roundtrip WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _measure(conn: asyncpg.Connection, keys: int, batch: int | None) -> dict[str, float]:
    """CPU (client, backend) and wall time per key, in microseconds, of reading ``keys`` keys."""
    backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
    me = psutil.Process()
    client0, server0, wall0 = _cpu(me), _cpu(backend), time.perf_counter()
    async with conn.transaction():
        if batch is None:
            for i in range(keys):
                await conn.fetchval(_ONE, f"k{i}")
        else:
            for start in range(0, keys, batch):
                await conn.fetch(_MANY, [f"k{i}" for i in range(start, min(keys, start + batch))])
    return {
        "client_us": round(1e6 * (_cpu(me) - client0) / keys, 1),
        "backend_us": round(1e6 * (_cpu(backend) - server0) / keys, 1),
        "wall_us": round(1e6 * (time.perf_counter() - wall0) / keys, 1),
    }


async def run(keys: int, batch: int) -> dict[str, dict[str, float]]:
    """Both ways, each after a warm-up pass (plans cached, pages in shared buffers)."""
    folder = Path(tempfile.mkdtemp(prefix="som-roundtrip-"))
    pg = EmbeddedPostgres(folder / "pgdata", ephemeral=True)
    dsn = pg.start()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE roundtrip (id text PRIMARY KEY, v int NOT NULL)")
            await conn.execute(
                "INSERT INTO roundtrip SELECT 'k' || g, g FROM generate_series(0, $1 - 1) g", keys
            )
            await conn.execute("ANALYZE roundtrip")
            figures: dict[str, dict[str, float]] = {}
            for name, size in (("per_key", None), ("batched", batch)):
                await _measure(conn, keys, size)  # warm-up
                figures[name] = await _measure(conn, keys, size)
            return figures
        finally:
            await conn.close()
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    """Parse the options, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100, help="keys per statement when batched")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    figures = uvloop.run(run(args.keys, args.batch))
    if args.json:
        print(json.dumps(figures))
        return
    for name, f in figures.items():
        print(
            f"{name:8}  client {f['client_us']:6.1f} µs  backend {f['backend_us']:6.1f} µs  "
            f"wall {f['wall_us']:6.1f} µs  per key"
        )


if __name__ == "__main__":
    main()
