"""Backlog gauges sampled every few seconds: outbox size and age, due timers, readiness.

These are states of PostgreSQL, not of a message, so one cheap query per interval sets them instead
of each handler paying for it. A failed sample leaves the gauges as they were (the outage is visible
through ``som_worker_ready`` and ``som_consumer_paused``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from shared.messaging import metrics

log = logging.getLogger("som.sampler")

Readiness = Callable[[], Awaitable[dict[str, bool]]]

# Unfired, uncancelled timers whose due time has passed on their own clock: the wall clock's, then
# each test clock's, so each part uses the (clock, service, due_at) index of the scheduler.
# ``$2``: the instant the sample is taken at (NULL: the database's now()).
_BACKLOG_SQL = """
SELECT
  (SELECT count(*) FROM messaging.outbox WHERE service = $1) AS outbox_rows,
  (SELECT coalesce(extract(epoch FROM coalesce($2::timestamptz, now()) - min(created_at)), 0)
     FROM messaging.outbox WHERE service = $1) AS outbox_age,
  (SELECT count(*) FROM timekeeping.timers t
     WHERE t.service = $1 AND t.clock = 'system' AND t.due_at <= coalesce($2::timestamptz, now())
       AND t.fired_at IS NULL AND t.cancelled_at IS NULL)
  + (SELECT coalesce(sum(n), 0) FROM timekeeping.clocks c CROSS JOIN LATERAL (
       SELECT count(*) AS n FROM timekeeping.timers t
       WHERE t.service = $1 AND t.clock = c.name AND t.due_at <= c.now
         AND t.fired_at IS NULL AND t.cancelled_at IS NULL) x) AS timers_due
"""


async def sample_once(
    pool: asyncpg.Pool, worker: str, service: str, readiness: Readiness, *, at: datetime | None = None
) -> None:
    """Set the backlog gauges of ``worker`` (label) from the rows of ``service`` (namespaced name).

    ``at``: the wall-clock instant to sample at (default the database's now), so an age is exact.
    """
    checks = await readiness()
    metrics.WORKER_READY.labels(worker).set(1 if checks and all(checks.values()) else 0)
    row = await pool.fetchrow(_BACKLOG_SQL, service, at)
    if row is None:
        return
    metrics.OUTBOX_BACKLOG.labels(worker).set(int(row["outbox_rows"]))
    metrics.OUTBOX_OLDEST_SECONDS.labels(worker).set(float(row["outbox_age"]))
    metrics.TIMERS_DUE.labels(worker).set(int(row["timers_due"]))


async def run_sampler(
    pool: asyncpg.Pool, worker: str, service: str, readiness: Readiness, *, interval: float = 5.0
) -> None:
    """Sample forever (a background task of the worker); errors are logged at debug and skipped."""
    while True:
        try:
            await sample_once(pool, worker, service, readiness)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an outage: keep the last values; readiness reports it
            with contextlib.suppress(Exception):
                metrics.WORKER_READY.labels(worker).set(0)
            log.debug("metrics sample of %s failed: %s", worker, type(exc).__name__)
        await asyncio.sleep(interval)
