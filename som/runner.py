"""Running workers: one in this process (``som worker``) or the whole set as child processes (``som up``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from services.registry import WORKERS, build_worker
from shared.db.migrations import migrate_dsn
from shared.db.pool import create_pool
from shared.db.uow import Database
from shared.health import HealthServer
from shared.messaging.admin import ensure_topics
from shared.messaging.topics import all_topics
from shared.settings import Settings
from shared.telemetry import setup_logging, setup_tracing

log = logging.getLogger("som.runner")


async def prepare(settings: Settings) -> None:
    """Apply migrations and create every topic (idempotent)."""
    assert settings.database_url and settings.kafka_bootstrap
    await migrate_dsn(settings.database_url)
    await ensure_topics(
        settings.kafka_bootstrap,
        all_topics(settings.topic_namespace, settings.default_partitions, settings.group),
        replication_factor=settings.topic_replication_factor,
    )


async def run_worker(name: str, settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run one worker until SIGINT/SIGTERM (or ``stop``), with its health server."""
    assert settings.database_url and settings.kafka_bootstrap
    setup_logging(name, settings.log_level, json_lines=settings.log_json)
    setup_tracing(f"som-{name}")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    pool = await create_pool(settings.database_url, min_size=1, max_size=10)
    db = Database(pool, namespace=settings.topic_namespace)
    worker = build_worker(name, settings, db)
    health: HealthServer | None = None
    try:
        await worker.start()
        port = settings.health_port or (
            settings.health_port_base + WORKERS.index(name) if settings.health_port_base else None
        )
        if port:
            health = HealthServer(worker.readiness, port=port)
            await health.start()
        log.info("worker %s started (group %s)", name, worker.group)
        await stop.wait()
    finally:
        log.info("worker %s stopping", name)
        if health:
            await health.stop()
        await worker.stop()
        await pool.close()


@dataclass
class WorkerSet:
    """The worker processes started by ``som up``."""

    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, names: tuple[str, ...] = WORKERS) -> None:
        for name in names:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "som", "worker", name],
                env=self.env,
                start_new_session=True,  # Ctrl-C is ours to handle: we stop children in order
            )

    def dead(self) -> list[str]:
        """Workers that exited on their own."""
        return [n for n, p in self.processes.items() if p.poll() is not None]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every worker, wait, then SIGKILL stragglers: nothing is left behind."""
        for p in self.processes.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.monotonic()))
            if p.poll() is None:
                p.kill()
                p.wait(5)


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for worker processes: resolved endpoints plus the caller's environment."""
    env = dict(os.environ)
    env.update(
        {
            "SOM_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
            "SOM_DATABASE_URL": str(settings.database_url),
            "SOM_TOPIC_NAMESPACE": settings.topic_namespace,
            "SOM_HEALTH_PORT_BASE": str(settings.health_port_base),
            "SOM_CONSUMER_SESSION_TIMEOUT_MS": str(settings.consumer_session_timeout_ms),
            "SOM_CONSUMER_HEARTBEAT_MS": str(settings.consumer_heartbeat_ms),
            "SOM_SCHEDULER_POLL_SECONDS": str(settings.scheduler_poll_seconds),
            "SOM_LOG_LEVEL": settings.log_level,
            "SOM_CONSUMER_CONCURRENCY": str(settings.consumer_concurrency),
            "SOM_CONSUMER_FETCH_MAX_WAIT_MS": str(settings.consumer_fetch_max_wait_ms),
        }
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def worker_set(settings: Settings, names: tuple[str, ...] = WORKERS) -> Iterator[WorkerSet]:
    """Start the workers as child processes; always stop them."""
    ws = WorkerSet(child_env(settings))
    try:
        ws.start(names)
        yield ws
    finally:
        ws.stop()
