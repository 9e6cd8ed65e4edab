"""Test infrastructure: a real Kafka-protocol broker and a real PostgreSQL for the whole session.

Chosen in this order: ``SOM_KAFKA_BOOTSTRAP`` + ``SOM_DATABASE_URL`` if set; testcontainers
(Apache Kafka in KRaft mode and PostgreSQL) if a Docker engine answers; otherwise the embedded
Tansu broker and embedded PostgreSQL. Each test gets its own topic namespace and consumer
groups, so tests never see each other's messages.

Hypothesis profiles (chosen by ``HYPOTHESIS_PROFILE``, default ``dev``): ``dev`` tries few
examples so the local run stays fast; ``ci`` tries many and prints a reproduction blob on failure.
Tests set ``settings(...)`` only for what truly differs per test (e.g. stateful step counts).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.registry import all_topics, migrate_dsn
from shared.db.pool import create_pool
from shared.db.uow import Database
from shared.messaging.admin import ensure_topics
from shared.settings import Settings
from shared.telemetry import setup_tracing
from som.embedded import infrastructure

# No deadline and no too_slow check: the machine is shared, so how long an example takes says nothing
# about correctness (and the house rules forbid timed assertions).
_UNTIMED: dict[str, Any] = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
hypothesis_settings.register_profile("dev", max_examples=30, **_UNTIMED)
hypothesis_settings.register_profile("ci", max_examples=200, print_blob=True, **_UNTIMED)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

SPANS = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(SPANS))
setup_tracing("som-tests", provider=_provider)


@dataclass(frozen=True)
class Infra:
    """Where the session's broker and database are, and how they were obtained."""

    kafka_bootstrap: str
    database_url: str
    kind: str


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """The session's broker and database."""
    env_kafka, env_db = os.environ.get("SOM_KAFKA_BOOTSTRAP"), os.environ.get("SOM_DATABASE_URL")
    if env_kafka and env_db:
        yield Infra(env_kafka, env_db, "environment")
    elif _docker_answers():  # pragma: no cover - no Docker engine on this project's CI
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with (
            KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka,
            PostgresContainer("postgres:16") as pg,
        ):
            yield Infra(kafka.get_bootstrap_server(), pg.get_connection_url(driver=None), "testcontainers")
    else:
        data = Path(tempfile.mkdtemp(prefix="som-test-"))
        with infrastructure(kafka_bootstrap=None, database_url=None, data_dir=data, ephemeral=True) as ep:
            yield Infra(ep.kafka_bootstrap, ep.database_url, "embedded")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
async def migrated(infra: Infra) -> Infra:
    """The database with every migration applied (once per session)."""
    await migrate_dsn(infra.database_url)
    return infra


def make_settings(infra: Infra, **overrides: Any) -> Settings:
    """Settings for one test: its own topic namespace, short retry backoff."""
    values: dict[str, Any] = {
        "kafka_bootstrap": infra.kafka_bootstrap,
        "database_url": infra.database_url,
        "topic_namespace": f"t{uuid.uuid4().hex[:10]}.",
        "default_partitions": 3,
        "retry_backoff_seconds": (0.2, 0.4, 0.8),
        "retry_fetch_max_wait_ms": 500,
        "relay_poll_seconds": 0.5,
        "consumer_session_timeout_ms": 2_000,
        "consumer_heartbeat_ms": 500,
        "scheduler_poll_seconds": 0.1,
        "consumer_concurrency": 1,
        "consumer_lanes": 3,  # partitions in parallel, so the tests exercise concurrent lanes
        "log_json": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def settings(migrated: Infra) -> Settings:
    """A fresh namespace with all its topics created."""
    s = make_settings(migrated)
    await ensure_topics(
        migrated.kafka_bootstrap, all_topics(s.topic_namespace, s.default_partitions, s.group)
    )
    return s


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    """A pool on the session database, scoped to the test's namespace."""
    assert settings.database_url
    pool = await create_pool(settings.database_url, min_size=1, max_size=8)
    try:
        yield Database(pool, namespace=settings.topic_namespace)
    finally:
        async with asyncio.timeout(10):
            await pool.close()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Spans recorded by the test (cleared at its start)."""
    SPANS.clear()
    return SPANS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``-n 2``), the tests that run ``som up`` share one worker process, one
    after the other: ``som up`` publishes its endpoints in the working directory's data folder
    and binds the console port, which two at once would fight over."""
    for item in items:
        if item.path.name in ("test_cli.py", "test_process_hygiene.py"):
            item.add_marker(pytest.mark.xdist_group("som_up"))
