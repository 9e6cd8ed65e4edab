"""Running the system: ``som up``, ``som worker``, ``som migrate``, ``som topics``."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import Annotated

import typer
from rich.table import Table

from services.registry import WORKERS
from shared.settings import Settings, get_settings
from som.common import EXIT_USAGE, console, err, fail, resolved_settings, run, system_endpoints

app = typer.Typer()


@app.command()
def up(
    demo: Annotated[bool, typer.Option("--demo", help="Also feed sample orders and show invoices.")] = False,
    demo_rate: Annotated[float, typer.Option(help="Demo orders per second.")] = 1.0,
    health_port_base: Annotated[int, typer.Option(help="First health/metrics port (one per worker).")] = 9400,
    console_port: Annotated[
        int | None, typer.Option(help="Operator console port (default SOM_CONSOLE_PORT, 8080; 0 = none).")
    ] = None,
) -> None:
    """Start everything: embedded broker and database (unless configured), migrations, topics, all workers."""
    from som.runner import prepare, start_console, worker_set

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
            port = s.console_port if console_port is None else console_port
            web = start_console(s, port) if port else None
            if web is not None:
                console.print(
                    f"Operator console: [bold]http://{s.console_host}:{port}/[/bold] "
                    "(first user: som users add NAME --role admin)"
                )
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
                if web is not None and web.poll() is None:
                    web.send_signal(signal.SIGTERM)
                    try:
                        web.wait(10)
                    except subprocess.TimeoutExpired:
                        web.kill()
                        web.wait(5)
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
    from som.runner import event_loop_factory, run_worker

    if name not in WORKERS:
        fail(f"unknown worker {name!r}; choose from {', '.join(WORKERS)}", EXIT_USAGE)
    settings = resolved_settings()
    run(run_worker(name, settings), loop_factory=event_loop_factory(settings.event_loop))


@app.command()
def migrate() -> None:
    """Apply database migrations (idempotent)."""
    from services.registry import migrate_dsn

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
    from services.registry import all_topics
    from shared.messaging.admin import ensure_topics

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
