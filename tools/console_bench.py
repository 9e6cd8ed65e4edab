"""Benchmark figure: the console's subscriptions page with N subscriptions in the database.

Starts an ephemeral embedded PostgreSQL, applies the migrations, inserts N subscriptions (and one
owner with an e-mail each), then requests the page through the ASGI app (no network, no browser:
server time, query plus rendering) for the first page, each filter, an e-mail search and a page
deep in the keyset, and prints p50 and p99 per kind with the query plan of the first page.

    .venv/bin/python tools/console_bench.py [--rows 100000] [--requests 50]

A measurement, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from services.registry import migrate_dsn
from shared import operators
from shared.db.pool import create_pool
from shared.settings import Settings
from som.console.app import create_app
from som.console.security import hash_password
from som.embedded import EmbeddedPostgres

SEED = """
INSERT INTO lifecycle.subscriptions (subscription_id, status, version, channel, customer_id, plan_id, state,
                                     created_at, updated_at)
SELECT 'bench-' || lpad(i::text, 7, '0'),
       (ARRAY['active','active','active','trial','past_due','suspended','cancelled','pending_approval'])[1 + i % 8],
       1,
       (ARRAY['direct','stripe','aws_marketplace','azure_marketplace','shopify'])[1 + i % 5],
       'cus-' || (i % 20000),
       (ARRAY['starter','pro','enterprise'])[1 + i % 3],
       jsonb_build_object('domain', jsonb_build_object('quantity', 1 + i % 50,
                          'current_period_end', '2026-12-01'), 'commercial', '{}'::jsonb),
       now() - make_interval(secs => i * 7), now() - make_interval(secs => i * 3)
FROM generate_series(1, $1) AS i;
"""
SEED_USERS = """
INSERT INTO lifecycle.subscription_users (subscription_id, user_id, email, role)
SELECT subscription_id, 'u-' || subscription_id, subscription_id || '@customer.example', 'owner'
FROM lifecycle.subscriptions WHERE subscription_id LIKE 'bench-%';
"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(rows: int, requests: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="som-console-bench-"))
    pg = EmbeddedPostgres(data / "pgdata", ephemeral=True)
    try:
        dsn = pg.start()
        await migrate_dsn(dsn)
        pool = await create_pool(dsn, min_size=1, max_size=4)
        try:
            started = time.perf_counter()
            await pool.execute(SEED, rows)
            await pool.execute(SEED_USERS)
            await pool.execute("ANALYZE lifecycle.subscriptions; ANALYZE lifecycle.subscription_users")
            print(f"seeded {rows} subscriptions in {time.perf_counter() - started:.1f} s")
            await operators.upsert_user(pool, "bench", "viewer", hash_password("bench-password"))
            app = create_app(Settings(database_url=dsn), pool)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                page = await client.get("/login")
                token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
                await client.post(
                    "/login", data={"username": "bench", "password": "bench-password", "csrf_token": token}
                )
                deep = await pool.fetchrow(
                    "SELECT updated_at, subscription_id FROM lifecycle.subscriptions "
                    "ORDER BY updated_at DESC, subscription_id DESC OFFSET $1 LIMIT 1",
                    rows // 2,
                )
                cursor = f"{deep['updated_at'].isoformat()}|{deep['subscription_id']}"
                kinds = {
                    "first page": {},
                    "status=suspended": {"status": "suspended"},
                    "channel=stripe": {"channel": "stripe"},
                    "plan=enterprise": {"plan": "enterprise"},
                    "customer": {"customer": "cus-1234"},
                    "e-mail search": {"q": f"bench-{rows // 3:07d}@customer.example"},
                    "id search": {"q": f"bench-{rows // 4:07d}"},
                    "page at the middle": {"after": cursor},
                }
                print(f"{'request':<22} {'p50 ms':>8} {'p99 ms':>8}  rows")
                for name, params in kinds.items():
                    times: list[float] = []
                    shown = 0
                    for _ in range(requests):
                        t0 = time.perf_counter()
                        r = await client.get("/subscriptions", params=params)
                        times.append((time.perf_counter() - t0) * 1000)
                        assert r.status_code == 200, r.text
                        shown = r.text.count('<tr><td><a href="/subscriptions/')
                    print(f"{name:<22} {_pct(times, 0.5):>8.1f} {_pct(times, 0.99):>8.1f}  {shown}")
            plan = await pool.fetch(
                "EXPLAIN SELECT subscription_id FROM lifecycle.subscriptions WHERE status = 'suspended' "
                "ORDER BY updated_at DESC, subscription_id DESC LIMIT 51"
            )
            print("plan (status filter):", " / ".join(r[0].strip() for r in plan[:3]))
        finally:
            await pool.close()
    finally:
        pg.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.requests))
