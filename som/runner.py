"""Running workers: one in this process (``som worker``) or the whole set as child processes (``som up``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from services.registry import WORKERS, build_worker
from shared.db.migrations import migrate_dsn
from shared.db.pool import create_pool
from shared.db.uow import Database
from shared.health import HealthServer
from shared.messaging.admin import ensure_topics
from shared.messaging.errors import is_outage
from shared.messaging.topics import all_topics
from shared.settings import Settings
from shared.telemetry import setup_logging, setup_tracing
from som.embedded import parent_death_preexec, set_parent_death_signal

log = logging.getLogger("som.runner")
T = TypeVar("T")

PARENT_PID_ENV = "SOM_PARENT_PID"
# How long a worker whose parent died may take to stop cleanly before it exits hard.
ORPHAN_EXIT_SECONDS = 5.0


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM or SIGHUP, so ``with`` blocks stop what they started."""


@contextlib.contextmanager
def terminate_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C does: workers, broker and database are stopped.

    The first signal raises :class:`Terminated` (exit code 128 + signal); later ones are ignored
    so that the cleanup itself is not cut short.
    """

    def _handler(signum: int, _frame: object) -> None:
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        raise Terminated(128 + signum)

    previous = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _parent_gone() -> bool:
    expected = os.environ.get(PARENT_PID_ENV)
    return bool(expected) and os.getppid() != int(expected or 0)


async def _watch_parent(stop: asyncio.Event, poll: float = 0.5) -> None:
    """Stop when the process that started this worker is gone (backstop for the death signal)."""
    while not stop.is_set():
        if _parent_gone():
            log.warning("parent process exited; stopping")
            _exit_soon()
            stop.set()
            return
        await asyncio.sleep(poll)


def _on_sigterm(stop: asyncio.Event) -> None:
    if _parent_gone():  # the parent-death signal: bound the time we take to go
        _exit_soon()
    stop.set()


def _exit_soon() -> None:
    # A clean stop may hang when the broker died with the parent: exit hard after a grace period.
    import threading

    t = threading.Timer(ORPHAN_EXIT_SECONDS, os._exit, args=(1,))
    t.daemon = True
    t.start()


async def prepare(settings: Settings) -> None:
    """Apply migrations and create every topic (idempotent)."""
    assert settings.database_url and settings.kafka_bootstrap
    await migrate_dsn(settings.database_url)
    await ensure_topics(
        settings.kafka_bootstrap,
        all_topics(settings.topic_namespace, settings.default_partitions, settings.group),
        replication_factor=settings.topic_replication_factor,
    )


async def _patiently(what: str, connect: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T:
    """``connect()``, waiting with backoff while the dependency is unreachable (an outage, not an error).

    A worker restarted while PostgreSQL is down must wait for it, as a running worker does.
    """
    delay = 0.2
    while True:
        try:
            return await connect()
        except Exception as exc:
            if not is_outage(exc) or stop.is_set():
                raise
            log.warning("%s unreachable at start (%s: %s); waiting", what, type(exc).__name__, exc)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


def event_loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop a worker runs on: uvloop (libuv; the loop's own work and socket I/O cost a
    fraction of asyncio's, which a worker pays per statement and per record) or asyncio's."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def settle_heap() -> None:
    """Keep the garbage collector off what a started worker holds for its whole life.

    After start the modules, models and clients (about 100,000 objects) move to the permanent
    generation, and young collections run every 10,000 allocations instead of 700: the handlers
    make little cyclic garbage, and a 10,000-order bench spent 1.8 s of the workers' CPU in
    collections (entitlements, whose check API holds every customer's set, 7 % of its CPU) against
    0.45 s after.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


async def run_worker(name: str, settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run one worker until SIGINT/SIGTERM (or ``stop``), with its health server."""
    assert settings.database_url and settings.kafka_bootstrap
    setup_logging(name, settings.log_level, json_lines=settings.log_json)
    setup_tracing(f"som-{name}")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    watcher: asyncio.Task[None] | None = None
    if os.environ.get(PARENT_PID_ENV):
        # Started by `som up`/`bench`/`chaos`: never outlive that parent, even if it was SIGKILLed.
        set_parent_death_signal(signal.SIGTERM)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, _on_sigterm, stop)
        watcher = asyncio.create_task(_watch_parent(stop))
    pool = await _patiently(
        "database",
        lambda: create_pool(
            str(settings.database_url),
            min_size=1,
            max_size=10,
            server_settings={"application_name": f"som-{name}"},  # who holds what, in pg_stat_activity
        ),
        stop,
    )
    db = Database(pool, namespace=settings.topic_namespace)
    worker = build_worker(name, settings, db)
    health: HealthServer | None = None
    try:
        await worker.start()
        settle_heap()
        port = settings.health_port or (
            settings.health_port_base + WORKERS.index(name) if settings.health_port_base else None
        )
        if port:
            health = HealthServer(worker.readiness, port=port, routes=worker.http)
            await health.start()
        log.info("worker %s started (group %s)", name, worker.group)
        await stop.wait()
    finally:
        log.info("worker %s stopping", name)
        if watcher:
            watcher.cancel()
        if health:
            await health.stop()
        await worker.stop()
        await pool.close()


@dataclass
class WorkerSet:
    """The worker processes started by ``som up``, ``som bench`` and ``som chaos``.

    Keys are worker names, with ``#2``, ``#3`` ... for further replicas of the same worker.
    """

    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, names: tuple[str, ...] = WORKERS, *, replicas: int = 1) -> None:
        """Start ``replicas`` processes of each worker (one consumer group per worker)."""
        for name in names:
            for i in range(1, replicas + 1):
                self.start_one(name if i == 1 else f"{name}#{i}")

    def start_one(self, key: str) -> subprocess.Popen[bytes]:
        """Start (or restart) the process ``key`` (``NAME`` or ``NAME#N``)."""
        name = key.split("#", 1)[0]
        env = dict(self.env)
        env[PARENT_PID_ENV] = str(os.getpid())
        proc = subprocess.Popen(
            [sys.executable, "-m", "som", "worker", name],
            env=env,
            start_new_session=True,  # Ctrl-C is ours to handle: we stop children in order
            preexec_fn=parent_death_preexec(signal.SIGTERM),  # and they die with us regardless
        )
        self.processes[key] = proc
        return proc

    def kill(self, key: str) -> None:
        """SIGKILL one worker process (chaos) and reap it."""
        proc = self.processes[key]
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

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


def start_console(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    """The operator console as a child process (``som up``); it dies with its parent like the workers."""
    env = child_env(settings)
    env[PARENT_PID_ENV] = str(os.getpid())
    return subprocess.Popen(
        [sys.executable, "-m", "som", "console", "--host", settings.console_host, "--port", str(port)],
        env=env,
        start_new_session=True,
        preexec_fn=parent_death_preexec(signal.SIGTERM),
    )


@contextlib.contextmanager
def worker_set(
    settings: Settings,
    names: tuple[str, ...] = WORKERS,
    *,
    replicas: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[WorkerSet]:
    """Start the workers as child processes; always stop them."""
    ws = WorkerSet(child_env(settings, **(extra_env or {})))
    try:
        ws.start(names, replicas=replicas)
        yield ws
    finally:
        ws.stop()
