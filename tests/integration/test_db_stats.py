"""Statement figures from pg_stat_statements on an embedded server that preloads it.

The relay's claim is the statement they caught: on a queue table whose statistics say "empty",
"DELETE ... WHERE id IN (subquery)" re-ran the subquery for every row of the outbox (hundreds of
thousands of buffer visits a claim). Its buffer visits per claim are counted here, not timed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared.db.migrations import migrate_dsn
from shared.db.pool import create_pool
from shared.db.statement_stats import read, reset
from shared.messaging.admin import ensure_topics
from shared.messaging.relay import OutboxRelay
from shared.messaging.topics import TopicSpec
from som.embedded import EmbeddedPostgres
from tests.conftest import Infra
from tests.integration.helpers import TopicReader, som_env


@pytest.fixture(scope="module")
def counting_dsn() -> Iterator[str]:
    """A migrated embedded server of its own that loads pg_stat_statements."""
    data = Path(tempfile.mkdtemp(prefix="som-dbstats-"))
    pg = EmbeddedPostgres(data / "pgdata", ephemeral=True, preload=("pg_stat_statements",))
    try:
        yield pg.start()
    finally:
        pg.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
async def pool(counting_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate_dsn(counting_dsn)
    pool = await create_pool(counting_dsn, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def test_statements_are_counted_per_order_and_the_measuring_left_out(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await reset(conn)
        for i in range(30):  # 10 "orders" of three inbox claims each, one transaction each
            await conn.execute(
                "INSERT INTO messaging.inbox (consumer_group, event_id, topic) VALUES ($1, $2, $3)",
                "stats-test",
                f"e-{uuid.uuid4()}-{i}",
                "t",
            )
        figures = await read(conn, 10, settle_seconds=0)
    claim = next(t for t in figures["top"] if "messaging.inbox" in t["query"])
    assert claim["calls_per_order"] == 3.0
    assert claim["wal_records_per_call"] >= 1  # the row and its index entry
    assert figures["statements_per_order"] == 3.0  # reset and read are not counted


async def test_a_role_that_may_not_reset_table_counters_still_gets_the_statement_figures(
    pool: asyncpg.Pool, counting_dsn: str
) -> None:
    role = f"stats_reader_{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'x'")
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute(f"GRANT EXECUTE ON FUNCTION pg_stat_statements_reset TO {role}")
        await conn.execute(f"GRANT USAGE ON SCHEMA messaging TO {role}")
        await conn.execute(f"GRANT SELECT ON messaging.inbox TO {role}")
    reader = await asyncpg.connect(counting_dsn, user=role, password="x")
    try:
        assert await reset(reader) is False  # pg_stat_reset is a superuser's, and was not granted
        await reader.fetchval("SELECT count(*) FROM messaging.inbox")
        figures = await read(reader, 1, with_tables=False)
    finally:
        await reader.close()
    assert "tables" not in figures
    assert any("messaging.inbox" in t["query"] for t in figures["top"])


async def test_a_relay_claim_visits_each_row_a_few_times_not_once_per_row(
    pool: asyncpg.Pool, infra: Infra
) -> None:
    service = f"stats{uuid.uuid4().hex[:8]}"
    topic = f"{service}.probe"
    await ensure_topics(infra.kafka_bootstrap, [TopicSpec(topic, 1)])
    async with pool.acquire() as conn:
        # Statistics taken when the queue had just been drained (pages left, no live rows: the
        # planner takes it for empty), as autovacuum often finds it, then the next burst.
        fill = (
            "INSERT INTO messaging.outbox (service, topic, key, value, headers) "
            "SELECT $1, $2, 'k' || g, convert_to('v' || g, 'UTF8'), '{}'::jsonb FROM generate_series(1, $3) g"
        )
        rows = 3000
        await conn.execute(fill, f"{service}-drained", topic, rows)
        await conn.execute("DELETE FROM messaging.outbox")
        await conn.execute("ANALYZE messaging.outbox")
        await conn.execute(fill, service, topic, rows)
        await reset(conn)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        relay = OutboxRelay(pool, producer, service, batch_size=500)
        assert await relay.drain() == rows
    finally:
        await producer.stop()
    async with pool.acquire() as conn:
        figures = await read(conn, rows, settle_seconds=0)
        assert await conn.fetchval("SELECT count(*) FROM messaging.outbox WHERE service = $1", service) == 0
    claim = next(t for t in figures["top"] if "DELETE FROM messaging.outbox" in t["query"])
    # 500 rows a claim; the plan that re-ran its subquery per row visited 75,000-190,000 buffers.
    assert claim["buffer_hits_per_call"] < 10 * 500, claim
    async with TopicReader(infra.kafka_bootstrap, topic) as out:
        await out.wait_for(rows, timeout=30)
        keys = [r.key.decode() for r in out.records if r.key is not None]
    assert keys == [f"k{i}" for i in range(1, rows + 1)]  # all of them, in id order


def test_som_bench_reports_the_database_per_order(tmp_path: Path) -> None:
    """``som bench --db-stats`` on the embedded path: its own server loads the extension."""
    env = som_env(SOM_DATA_DIR=str(tmp_path), SOM_LOG_LEVEL="WARNING")
    env.setdefault("XDG_RUNTIME_DIR", "/tmp")
    done = subprocess.run(
        [sys.executable, "-m", "som", "bench", "--orders", "20", "--db-stats", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["invoices"] == 20
    db = figures["db_stats"]
    # Every order costs each of the four workers at least its own statements.
    assert db["statements_per_order"] >= 4
    assert db["wal_records_per_order"] > 0
    statements = " ".join(t["query"] for t in db["top"])
    assert "billing." in statements and "lifecycle." in statements
    # Every order makes one subscription with its console indexes, one invoice, one inbox row a
    # worker; the table counters are read after every backend has reported them, so none falls
    # short. (The readiness probes' orders may still be finishing when the run's counting starts:
    # 21-22 rows for 20 orders were seen, so a few extra are allowed, not a doubled count.)
    written = {t["table"]: t for t in db["tables"]}
    assert 1.0 <= written["lifecycle.subscriptions"]["inserted_per_order"] <= 1.5
    assert written["lifecycle.subscriptions"]["indexes"] >= 2
    assert 1.0 <= written["billing.documents"]["inserted_per_order"] <= 1.5
    assert written["messaging.inbox"]["inserted_per_order"] >= 4
