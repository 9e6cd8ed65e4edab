"""``som``: run and operate the subscription order management workers.

Exit codes: 0 success, 1 the operation failed, 2 usage error, 3 nothing found / not allowed now,
4 the system is not reachable (start it with ``som up``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.registry import WORKERS
from shared.settings import Settings, get_settings

app = typer.Typer(
    help="Subscription order management: Kafka workers for intake, lifecycle, billing and entitlements.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="Inspect and replay dead-lettered messages.", no_args_is_help=True)
orders_app = typer.Typer(help="Publish orders in the direct channel format.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(orders_app, name="orders")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNREACHABLE = 1, 2, 3, 4


class UserError(Exception):
    """A mistake the user can fix; printed without a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine; user errors become a message and an exit code."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except UserError as exc:
        _fail(str(exc), exc.code)
        raise  # unreachable
    except (ConnectionError, OSError) as exc:
        _fail(f"cannot reach the broker or database: {exc}", EXIT_UNREACHABLE)
        raise


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
def system_endpoints(settings: Settings, *, publish: bool) -> Iterator[Settings]:
    """Use configured endpoints, or start the embedded broker and database for the duration."""
    from som.embedded import infrastructure

    with infrastructure(
        kafka_bootstrap=settings.kafka_bootstrap,
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        broker_port=settings.embedded_kafka_port,
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


# -- running -----------------------------------------------------------------------------------


@app.command()
def up(
    demo: Annotated[bool, typer.Option("--demo", help="Also feed sample orders and show invoices.")] = False,
    demo_rate: Annotated[float, typer.Option(help="Demo orders per second.")] = 1.0,
    health_port_base: Annotated[int, typer.Option(help="First health/metrics port (one per worker).")] = 9400,
) -> None:
    """Start everything: embedded broker and database (unless configured), migrations, topics, all workers."""
    from som.runner import prepare, worker_set

    settings = get_settings().model_copy(update={"health_port_base": health_port_base})
    if settings.kafka_bootstrap is None:
        # The embedded broker joins groups after about half the session timeout: keep starts quick.
        settings = settings.model_copy(
            update={"consumer_session_timeout_ms": 6_000, "consumer_heartbeat_ms": 1_000}
        )
    stop = {"flag": False}

    def _stop(*_: object) -> None:
        stop["flag"] = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # all stop everything, in order
        signal.signal(sig, _stop)
    with system_endpoints(settings, publish=True) as s:
        run(prepare(s))
        _banner(s)
        with worker_set(s) as workers:
            demo_task = None
            if demo:
                import threading

                from som.demo import run_demo

                demo_stop = threading.Event()
                demo_task = threading.Thread(
                    target=lambda: asyncio.run(run_demo(s, demo_rate, demo_stop, console)), daemon=True
                )
                demo_task.start()
            try:
                while not stop["flag"]:
                    dead = workers.dead()
                    if dead:
                        err.print(f"[red]worker(s) exited:[/red] {', '.join(dead)}; stopping")
                        break
                    time.sleep(0.2)
            finally:
                console.print("[yellow]stopping workers...[/yellow]")
                if demo_task:
                    demo_stop.set()
                    demo_task.join(10)
    console.print("[green]stopped: workers, broker and database are down.[/green]")


def _banner(s: Settings) -> None:
    table = Table(title="subscription order management is running", show_header=False)
    table.add_row("Kafka bootstrap", str(s.kafka_bootstrap))
    table.add_row("Database URL", str(s.database_url))
    table.add_row("Workers", ", ".join(WORKERS))
    if s.health_port_base:
        table.add_row(
            "Health/metrics",
            ", ".join(f"{w} :{s.health_port_base + i}" for i, w in enumerate(WORKERS)),
        )
    console.print(table)
    console.print(
        "Publish a test order from another terminal:  [bold]som orders send --plan pro --quantity 3[/bold]\n"
        f"Or with any Kafka client, a JSON document on [bold]{s.topic_namespace}orders.inbound.direct[/bold] "
        "(format in the README).  Ctrl-C stops everything."
    )


@app.command()
def worker(name: Annotated[str, typer.Argument(help=f"One of: {', '.join(WORKERS)}")]) -> None:
    """Run one worker in this process (needs SOM_KAFKA_BOOTSTRAP and SOM_DATABASE_URL, or `som up`)."""
    from som.runner import run_worker

    if name not in WORKERS:
        _fail(f"unknown worker {name!r}; choose from {', '.join(WORKERS)}", EXIT_USAGE)
    run(run_worker(name, resolved_settings()))


@app.command()
def migrate() -> None:
    """Apply database migrations (idempotent)."""
    from shared.db.migrations import migrate_dsn

    settings = resolved_settings()
    applied = run(migrate_dsn(str(settings.database_url)))
    console.print(
        f"applied {len(applied)} migration(s)"
        + (
            ": " + ", ".join(f"{m.component}/{m.version}" for m in applied)
            if applied
            else " (already up to date)"
        )
    )


@app.command()
def topics(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Create every topic (main, retry, dead-letter) with its partition count."""
    from shared.messaging.admin import ensure_topics
    from shared.messaging.topics import all_topics

    settings = resolved_settings()
    specs = all_topics(settings.topic_namespace, settings.default_partitions, settings.group)
    created = set(
        run(
            ensure_topics(
                str(settings.kafka_bootstrap), specs, replication_factor=settings.topic_replication_factor
            )
        )
    )
    if as_json:
        console.print_json(
            data=[{"topic": s.name, "partitions": s.partitions, "created": s.name in created} for s in specs]
        )
        return
    table = Table("topic", "partitions", "created now")
    for s in specs:
        table.add_row(s.name, str(s.partitions), "yes" if s.name in created else "")
    console.print(table)


# -- orders --------------------------------------------------------------------------------------


@orders_app.command("send")
def orders_send(
    plan: Annotated[str, typer.Option(help="Catalog plan id.")] = "pro",
    quantity: Annotated[int, typer.Option(min=1)] = 1,
    billing_interval: Annotated[str, typer.Option(help="P1M, P3M or P1Y.")] = "P1M",
    currency: Annotated[str, typer.Option()] = "USD",
    count: Annotated[int, typer.Option(min=1, help="How many orders.")] = 1,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Publish direct orders to orders.inbound.direct."""
    from aiokafka import AIOKafkaProducer

    from som.orders import direct_order, send_orders, subscription_id_of

    settings = resolved_settings()
    docs = [
        direct_order(plan=plan, quantity=quantity, billing_interval=billing_interval, currency=currency)
        for _ in range(count)
    ]

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await send_orders(producer, settings.topic_namespace, docs)
        finally:
            await producer.stop()

    run(go())
    out = [{"order_id": d["order_id"], "subscription_id": subscription_id_of(d)} for d in docs]
    if as_json:
        console.print_json(data=out)
    else:
        for o in out:
            console.print(f"sent order {o['order_id']} -> subscription {o['subscription_id']}")


# -- dead letters --------------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[str | None, typer.Option(help="Only this DLQ topic.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List dead-lettered messages with their error, origin and attempts."""
    from som.dlq import dlq_topics, read_dead_letters

    settings = resolved_settings()

    async def go() -> list[dict[str, object]]:
        names = (
            [topic] if topic else await dlq_topics(str(settings.kafka_bootstrap), settings.topic_namespace)
        )
        async with db_pool(settings) as pool:
            letters = await read_dead_letters(str(settings.kafka_bootstrap), names, pool)
        return [letter.summary() for letter in letters]

    rows = run(go())
    if as_json:
        console.print_json(data=rows)
        return
    if not rows:
        console.print("no dead letters")
        return
    table = Table(
        "dlq topic",
        "part",
        "offset",
        "original topic",
        "reason",
        "error",
        "attempts",
        "last failure",
        "replayed",
    )
    for r in rows:
        table.add_row(
            str(r["dlq_topic"]),
            str(r["partition"]),
            str(r["offset"]),
            str(r["original_topic"]),
            str(r["reason"]),
            f"{r['error_type']}: {str(r['error_message'])[:60]}",
            str(r["attempts"]),
            str(r["last_failure_at"]),
            "yes" if r["replayed"] else "",
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Option(help="The DLQ topic.")],
    offset: Annotated[int | None, typer.Option(help="Record offset; omit with --all.")] = None,
    partition: Annotated[int, typer.Option()] = 0,
    payload: Annotated[
        Path | None, typer.Option(help="Replay this corrected payload instead.", exists=True)
    ] = None,
    all_records: Annotated[bool, typer.Option("--all", help="Replay every record not replayed yet.")] = False,
    force: Annotated[bool, typer.Option(help="Replay even if replayed before.")] = False,
) -> None:
    """Re-publish dead letters to their original topic; a record is replayed once."""
    from som.dlq import AlreadyReplayed, read_dead_letters, replay

    if offset is None and not all_records:
        _fail("give --offset N or --all", EXIT_USAGE)
    settings = resolved_settings()

    async def go() -> list[str]:
        done: list[str] = []
        async with db_pool(settings) as pool:
            letters = await read_dead_letters(str(settings.kafka_bootstrap), [topic], pool)
            chosen = [
                x
                for x in letters
                if (all_records and not x.replayed) or (x.offset == offset and x.partition == partition)
            ]
            if not chosen:
                raise UserError("no such dead letter (or nothing left to replay)", EXIT_NOT_FOUND)
            for letter in chosen:
                try:
                    target = await replay(
                        str(settings.kafka_bootstrap), pool, letter, payload=payload, force=force
                    )
                except AlreadyReplayed as exc:
                    raise UserError(f"{exc}; use --force to replay again", EXIT_NOT_FOUND) from exc
                done.append(f"{letter.dlq_topic}[{letter.partition}]@{letter.offset} -> {target}")
        return done

    for line in run(go()):
        console.print(f"replayed {line}")


# -- benchmark -------------------------------------------------------------------------------------


@app.command()
def bench(
    orders: Annotated[int, typer.Option(min=1, help="How many direct orders.")] = 1000,
    rate: Annotated[float | None, typer.Option(help="Orders per second; default all at once.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    baseline: Annotated[bool, typer.Option("--baseline", help="Also run the baseline pipeline; report the ratio.")] = False,
    baseline_script: Annotated[Path | None, typer.Option(help="Baseline script (default ../shared/bench/).")] = None,
    tracing: Annotated[bool, typer.Option("--tracing/--no-tracing", help="Sample traces in the workers.")] = True,
    trace_ratio: Annotated[float | None, typer.Option(help="Sample this share of traces (parent-based).")] = None,
) -> None:
    """Measure throughput and p50/p99 latency from inbound order to invoice on billing.invoices."""
    from som.bench import default_baseline_script, run_baseline, run_bench, tracing_env

    script = baseline_script or default_baseline_script()
    if baseline and not script.exists():
        err.print(f"[yellow]baseline skipped:[/yellow] {script} not found")
        baseline = False
    extra: dict[str, Any] = {}
    with isolated_system("bench", extra_env=tracing_env(tracing, trace_ratio)) as s:
        if as_json:
            result = run(run_bench(s, orders, rate))
        else:
            with Progress(
                TextColumn("invoices"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
            ) as bar:
                task = bar.add_task("invoices", total=orders)
                result = run(
                    run_bench(s, orders, rate, progress=lambda n, total: bar.update(task, completed=n))
                )
        if baseline:  # same broker and database, same run
            base = run(run_baseline(script, str(s.kafka_bootstrap), str(s.database_url), orders))
            extra = {"baseline": base, "ratio": round(result.per_second / base["per_second"], 3) if base.get("per_second") else None}
    figures = {**result.as_dict(), **extra}
    if as_json:
        print(json.dumps(figures))
    else:
        table = Table("figure", "value", title="order -> invoice")
        for k, v in figures.items():
            table.add_row(k, str(v))
        console.print(table)
    if result.invoices < result.orders:
        raise typer.Exit(EXIT_FAILED)


@contextlib.contextmanager
def isolated_system(purpose: str, extra_env: dict[str, str] | None = None) -> Iterator[Settings]:
    """The worker set in a fresh topic namespace, on the configured or an embedded broker and database."""
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
            "data_dir": base.data_dir / purpose,
        }
    )
    with terminate_on_signals(), system_endpoints(base, publish=False) as s:
        run(prepare(s))
        with worker_set(s, extra_env=extra_env):
            run(_wait_ready(s))
            yield s


async def _wait_ready(s: Settings, timeout: float = 60.0) -> None:
    """Wait until an order placed now gets its invoice (all groups joined)."""
    from som.bench import run_bench

    warm = s.model_copy()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await run_bench(warm, 1, None, timeout=5.0)
        if r.invoices == 1:
            return
    raise UserError("workers did not become ready", EXIT_FAILED)


@app.command()
def schemas(
    check: Annotated[bool, typer.Option("--check", help="Only report drift; exit 1 if any.")] = False,
) -> None:
    """Generate the JSON Schemas of the contracts into schemas/."""
    from shared.contracts import schemas as gen

    if check:
        stale = gen.drift()
        if stale:
            _fail(f"schemas/ is out of date: {', '.join(stale)} (run `som schemas`)", EXIT_FAILED)
        console.print("schemas/ matches the contracts")
        return
    for name in gen.write():
        console.print(f"wrote schemas/{name}")


def _register_subcommands() -> None:
    # Operator command groups live in their own modules; importing them registers them on `app`.
    from som import billing_cli, chaos, intake_cli, ops  # noqa: F401

    app.command("chaos")(chaos.chaos)


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    try:
        app()
    except UserError as exc:  # raised outside run(): same message and exit code, no traceback
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(exc.code)
    except KeyboardInterrupt:
        sys.exit(130)


_register_subcommands()
