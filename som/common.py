"""What every command module shares: consoles, exit codes, user errors, settings and a database pool.

Exit codes: 0 success, 1 the operation failed, 2 usage error, 3 nothing found / not allowed now,
4 the system is not reachable (start it with ``som up``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from shared.settings import Settings, get_settings

if TYPE_CHECKING:  # imported where used: every som command imports this module at start
    from aiokafka import AIOKafkaProducer

    from shared.contracts.envelope import CloudEvent

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNREACHABLE = 1, 2, 3, 4


class UserError(Exception):
    """A mistake the user can fix; printed without a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int) -> NoReturn:
    """Print an error and leave with ``code``."""
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def run(coro: Awaitable[T], *, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> T:
    """Run a coroutine (on a loop from ``loop_factory`` when given); user errors become a message
    and an exit code."""
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(coro)  # type: ignore[arg-type]
    except UserError as exc:
        fail(str(exc), exc.code)
    except (ConnectionError, OSError) as exc:
        fail(f"cannot reach the broker or database: {exc}", EXIT_UNREACHABLE)


# -- where the running system is ------------------------------------------------------------


def _endpoints_file(settings: Settings) -> Path:
    return settings.data_dir / "endpoints.json"


def resolved_settings(*, require: bool = True) -> Settings:
    """Settings with endpoints from the environment, or from the ``som up`` running here."""
    settings = get_settings()
    if settings.kafka_bootstrap and settings.database_url:
        return settings
    f = _endpoints_file(settings)
    if f.exists():
        data = json.loads(f.read_text())
        return settings.model_copy(
            update={
                "kafka_bootstrap": settings.kafka_bootstrap or data["kafka_bootstrap"],
                "database_url": settings.database_url or data["database_url"],
            }
        )
    if require:
        raise UserError(
            "no running system: start one with `som up`, or set SOM_KAFKA_BOOTSTRAP and SOM_DATABASE_URL",
            EXIT_UNREACHABLE,
        )
    return settings


@contextlib.contextmanager
def system_endpoints(settings: Settings, *, publish: bool, ephemeral: bool = False) -> Iterator[Settings]:
    """Use configured endpoints, or start the embedded broker and database for the duration.

    ``ephemeral``: the embedded database's files are deleted when it stops.
    """
    from som.embedded import infrastructure

    with infrastructure(
        kafka_bootstrap=settings.kafka_bootstrap,
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        broker_port=settings.embedded_kafka_port,
        ephemeral=ephemeral,
        database_preload=settings.embedded_database_preload,
    ) as ep:
        resolved = settings.model_copy(
            update={"kafka_bootstrap": ep.kafka_bootstrap, "database_url": ep.database_url}
        )
        f = _endpoints_file(settings)
        if publish:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps({"kafka_bootstrap": ep.kafka_bootstrap, "database_url": ep.database_url}))
        try:
            yield resolved
        finally:
            if publish:
                f.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def db_pool(settings: Settings) -> AsyncIterator[Any]:
    """A small pool on the system's database."""
    from shared.db.pool import create_pool

    assert settings.database_url
    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.contextmanager
def isolated_system(
    purpose: str, extra_env: dict[str, str] | None = None, *, database_preload: tuple[str, ...] = ()
) -> Iterator[Settings]:
    """The worker set in a fresh topic namespace, on the configured or an embedded broker and database.

    SIGTERM and SIGHUP stop it the way Ctrl-C does: workers, broker and database.
    ``database_preload``: libraries an embedded database loads at start (``som bench --db-stats``).
    """
    import uuid

    from som.runner import prepare, terminate_on_signals, worker_set

    base = get_settings()
    base = base.model_copy(
        update={
            "topic_namespace": f"{purpose}{uuid.uuid4().hex[:8]}.",
            "health_port_base": 0,
            "health_port": None,
            "log_level": "WARNING",
            "consumer_session_timeout_ms": 6_000,
            "consumer_heartbeat_ms": 1_000,
            "scheduler_poll_seconds": 0.1,
            # Its own database directory: two runs at once (two benches) must not share a server
            # that the first one to finish stops under the other.
            "data_dir": base.data_dir / f"{purpose}-{uuid.uuid4().hex[:8]}",
            "embedded_database_preload": base.embedded_database_preload + database_preload,
        }
    )
    try:
        with terminate_on_signals(), system_endpoints(base, publish=False, ephemeral=True) as s:
            run(prepare(s))
            with worker_set(s, extra_env=extra_env):
                run(wait_ready(s))
                yield s
    finally:
        shutil.rmtree(base.data_dir, ignore_errors=True)  # the run's own folder (its database is gone)


async def wait_ready(s: Settings, timeout: float = 60.0) -> None:
    """Wait until an order placed now gets its invoice (all groups joined)."""
    from som.bench import run_bench

    warm = s.model_copy()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await run_bench(warm, 1, None, timeout=5.0)
        if r.invoices == 1:
            return
    raise UserError("workers did not become ready", EXIT_FAILED)


async def send_event(producer: AIOKafkaProducer, topic: str, event: CloudEvent) -> None:
    """Publish one CloudEvent as the workers' relay does: JSON value, keyed by its subject, with the
    CloudEvents headers (``topic``: the full, namespaced name)."""
    from shared.db.uow import event_headers

    assert event.subject is not None, "our commands are keyed by their subject"
    await producer.send_and_wait(
        topic,
        value=event.model_dump_json().encode(),
        key=event.subject.encode(),
        headers=[(k, v.encode()) for k, v in event_headers(event).items()],
    )


async def publish_events(settings: Settings, topic: str, events: list[CloudEvent]) -> None:
    """Publish CloudEvents on ``topic`` (logical name) of the running system, one producer for all."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await send_event(producer, f"{settings.topic_namespace}{topic}", event)
    finally:
        await producer.stop()


def jsonable(value: Any) -> Any:
    """Rows as JSON-ready data: dates as ISO text, Decimals as strings."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if hasattr(value, "as_tuple"):  # Decimal
        return str(value)
    return value
