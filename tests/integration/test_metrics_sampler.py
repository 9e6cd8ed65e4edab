"""The sampled backlog gauges read the real outbox and timer tables (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from shared.db.uow import Database
from shared.messaging.sampler import sample_once
from shared.timekeeping import create_clock

pytestmark = pytest.mark.integration


def gauge(name: str, worker: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": worker})


async def test_outbox_and_due_timers_are_sampled(db: Database) -> None:
    worker = f"{db.namespace}sampled"  # a worker name of its own: gauges are per service label
    service = worker

    async def ready() -> dict[str, bool]:
        return {"database": True, "broker": True}

    await sample_once(db.pool, worker, service, ready)
    assert gauge("som_outbox_backlog", worker) == 0
    assert gauge("som_outbox_oldest_seconds", worker) == 0
    assert gauge("som_timers_due", worker) == 0
    assert gauge("som_worker_ready", worker) == 1

    # One instant for the rows and the sample, so the age is an exact figure, not a race with time.
    at = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    await db.pool.execute(
        "INSERT INTO messaging.outbox (service, topic, key, value, created_at) VALUES "
        "($1, 't', 'k', '\\x00', $2::timestamptz - interval '45 seconds'), ($1, 't', 'k', '\\x01', $2)",
        service,
        at,
    )
    await db.pool.execute(
        "INSERT INTO timekeeping.timers (service, subscription_id, kind, due_at, topic, event_type, payload) VALUES "
        "($1, 's', 'a', $2::timestamptz - interval '1 hour', 't', 'e', '{}'), "  # due
        "($1, 's', 'b', $2::timestamptz + interval '1 hour', 't', 'e', '{}'), "  # not yet due
        "($1, 's', 'c', $2::timestamptz - interval '1 hour', 't', 'e', '{}')",  # due, but fired below
        service,
        at,
    )
    await db.pool.execute(
        "UPDATE timekeeping.timers SET fired_at = now() WHERE service = $1 AND kind = 'c'", service
    )

    async def not_ready() -> dict[str, bool]:
        return {"database": True, "partitions_assigned": False}

    await sample_once(db.pool, worker, service, not_ready, at=at)
    assert gauge("som_outbox_backlog", worker) == 2
    assert gauge("som_outbox_oldest_seconds", worker) == 45
    assert gauge("som_timers_due", worker) == 1
    assert gauge("som_worker_ready", worker) == 0

    await db.pool.execute("DELETE FROM messaging.outbox WHERE service = $1", service)
    await db.pool.execute("DELETE FROM timekeeping.timers WHERE service = $1", service)


async def test_timers_of_a_test_clock_are_due_on_that_clock(db: Database) -> None:
    worker = f"{db.namespace}clocked"
    clock = f"{db.namespace}sampler-clock"
    await create_clock(db.pool, clock, datetime(2025, 1, 1, tzinfo=UTC))

    async def ready() -> dict[str, bool]:
        return {"database": True}

    await db.pool.execute(
        "INSERT INTO timekeeping.timers (service, subscription_id, kind, due_at, clock, topic, event_type, payload) "
        "VALUES ($1, 's', 'a', '2024-12-31', $2, 't', 'e', '{}'), ($1, 's', 'b', '2025-01-02', $2, 't', 'e', '{}')",
        worker,
        clock,
    )
    await sample_once(db.pool, worker, worker, ready)
    assert (
        gauge("som_timers_due", worker) == 1
    )  # only the one before the test clock's now (not the wall clock's)
    await db.pool.execute("DELETE FROM timekeeping.timers WHERE service = $1", worker)
