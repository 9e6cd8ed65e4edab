"""``som bench``: throughput and latency from inbound order to invoice."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from som.common import EXIT_FAILED, console, err, isolated_system, run

app = typer.Typer()


@app.command()
def bench(
    orders: Annotated[int, typer.Option(min=1, help="How many direct orders.")] = 1000,
    rate: Annotated[float | None, typer.Option(help="Orders per second; default all at once.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="Also run the baseline pipeline; report the ratio.")
    ] = False,
    baseline_script: Annotated[
        Path | None, typer.Option(help="Baseline script (default ../shared/bench/).")
    ] = None,
    tracing: Annotated[
        bool | None,
        typer.Option(
            "--tracing/--no-tracing",
            help="Record every trace / none; default: as configured (none without an exporter).",
        ),
    ] = None,
    trace_ratio: Annotated[
        float | None, typer.Option(help="Sample this share of traces (parent-based).")
    ] = None,
    renewals: Annotated[
        int | None,
        typer.Option(
            min=1, help="Instead: N subscriptions on a test clock renewed at once; renewal invoices/s."
        ),
    ] = None,
    entitlement_checks: Annotated[
        int | None,
        typer.Option(min=1, help="Instead: N entitlement checks over HTTP at --check-rate; p50/p99."),
    ] = None,
    check_rate: Annotated[float, typer.Option(min=1, help="Entitlement checks per second.")] = 500.0,
    db_stats: Annotated[
        bool,
        typer.Option(
            "--db-stats",
            help="Also report the database's statements per order (per renewal) and the heaviest ones (pg_stat_statements).",
        ),
    ] = False,
) -> None:
    """Measure throughput and p50/p99 latency from inbound order to invoice on billing.invoices.

    With ``--renewals N``: create N subscriptions on a test clock, move it across their renewal
    date, and report renewal invoices per second and the time until the system is quiet.
    """
    from som.bench import default_baseline_script, run_baseline, run_bench, run_renewals, tracing_env
    from som.cpu import ProcessCpu

    if entitlement_checks is not None:
        _entitlement_checks(entitlement_checks, check_rate, as_json=as_json)
        return
    preload = ("pg_stat_statements",) if db_stats else ()
    if renewals is not None:
        with isolated_system(
            "bench", extra_env=tracing_env(tracing, trace_ratio), database_preload=preload
        ) as s:
            say = (lambda _m: None) if as_json else (lambda m: err.print(f"[dim]{m}[/dim]"))
            counting = run(_start_db_stats(s)) if db_stats else None
            figures_r: dict[str, Any] = run(run_renewals(s, renewals, progress=say)).as_dict()
            if counting is not None:  # per renewal, over the whole run (the subscriptions' creation included)
                figures_r["db_stats"] = run(_read_db_stats(s, renewals, counting))
        _show(figures_r, "renewal run", as_json=as_json)
        if figures_r["renewal_invoices"] != renewals:
            raise typer.Exit(EXIT_FAILED)
        return

    script = baseline_script or default_baseline_script()
    if baseline and not script.exists():
        err.print(f"[yellow]baseline skipped:[/yellow] {script} not found")
        baseline = False
    extra: dict[str, Any] = {}
    with isolated_system("bench", extra_env=tracing_env(tracing, trace_ratio), database_preload=preload) as s:
        cpu = ProcessCpu(s.data_dir / "pgdata")  # the embedded database's, if it is embedded
        counting = run(_start_db_stats(s)) if db_stats else None
        if as_json:
            result = run(run_bench(s, orders, rate, cpu=cpu))
        else:
            with Progress(
                TextColumn("invoices"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
            ) as bar:
                task = bar.add_task("invoices", total=orders)
                result = run(
                    run_bench(
                        s, orders, rate, cpu=cpu, progress=lambda n, total: bar.update(task, completed=n)
                    )
                )
        if counting is not None:  # before the baseline's statements count too
            extra["db_stats"] = run(_read_db_stats(s, orders, counting))
        if baseline:  # same broker and database, same run
            before = cpu.sample()
            base = run(run_baseline(script, str(s.kafka_bootstrap), str(s.database_url), orders))
            base["cpu_ms_per_message"] = cpu.per_order(before, cpu.sample(), orders)
            ratio = round(result.per_second / base["per_second"], 3) if base.get("per_second") else None
            extra.update(baseline=base, ratio=ratio)
    _show({**result.as_dict(), **extra}, "order -> invoice", as_json=as_json)
    if result.invoices < result.orders:
        raise typer.Exit(EXIT_FAILED)


@dataclass(frozen=True)
class _Counting:
    """What ``--db-stats`` could start counting: why nothing (``unavailable``), and whether the tables."""

    unavailable: str | None = None
    tables: bool = True


async def _start_db_stats(s: Any) -> _Counting:
    """Reset the statement (and, where the role may, the table) counts before the measured run."""
    from shared.db.statement_stats import StatsUnavailable, reset
    from som.common import db_pool

    async with db_pool(s) as pool, pool.acquire() as conn:
        try:
            tables = await reset(conn)
        except StatsUnavailable as exc:
            err.print(f"[yellow]database figures skipped:[/yellow] {exc}")
            return _Counting(unavailable=str(exc), tables=False)
    if not tables:
        err.print(
            "[yellow]table figures skipped:[/yellow] this role may not reset the table counters (pg_stat_reset)"
        )
    return _Counting(tables=tables)


async def _read_db_stats(s: Any, orders: int, counting: _Counting) -> dict[str, Any]:
    from shared.db.statement_stats import read
    from som.common import db_pool

    if counting.unavailable is not None:
        return {"unavailable": counting.unavailable}
    async with db_pool(s) as pool, pool.acquire() as conn:
        return dict(await read(conn, orders, with_tables=counting.tables))


def _show_statements(statements: list[dict[str, Any]]) -> None:
    """The heaviest statements of the run: their figures in a table, then each statement on a line."""
    table = Table("#", title="heaviest statements (execution time)")
    for heading in ("calls/order", "mean ms", "max ms", "ms/order", "WAL rec/call", "buffers/call"):
        table.add_column(heading, justify="right", no_wrap=True)
    for i, st in enumerate(statements, 1):
        table.add_row(
            str(i),
            *(str(st[k]) for k in ("calls_per_order", "mean_ms", "max_ms", "ms_per_order")),
            str(st["wal_records_per_call"]),
            str(st["buffer_hits_per_call"]),
        )
    console.print(table)
    # Below the table, not in it: a statement would squeeze the figures on a narrow terminal.
    for i, st in enumerate(statements, 1):
        console.print(
            f"{i:>2}  {st['query']}", no_wrap=True, overflow="ellipsis", markup=False, highlight=False
        )


def _show(figures: dict[str, Any], title: str, *, as_json: bool) -> None:
    """Print a run's figures: one JSON object, or a table with nested figures on rows of their own
    (the heaviest statements and the tables written of ``--db-stats`` in tables of their own below it)."""
    if as_json:
        print(json.dumps(figures))
        return
    db = figures.get("db_stats", {})
    table = Table("figure", "value", title=title)
    nested = {k: v for k, v in db.items() if k not in ("top", "tables")}
    for k, v in _flat({**figures, "db_stats": nested}).items():
        table.add_row(k, str(v))
    console.print(table)
    if db.get("top"):
        _show_statements(db["top"])
    if db.get("tables"):
        _show_tables(db["tables"])


def _show_tables(tables: list[dict[str, Any]]) -> None:
    """The tables the run wrote, most rows first, with the indexes no statement of the run read."""
    table = Table(title="rows written per order")
    table.add_column("table", overflow="fold")  # names are what the rows are read by: folded, never cut
    for heading in ("inserted", "updated", "deleted", "indexes"):
        table.add_column(heading, justify="right", no_wrap=True)
    table.add_column("indexes not scanned (non-unique)", overflow="fold")
    for t in tables:
        table.add_row(
            t["table"],
            *(str(t[k]) for k in ("inserted_per_order", "updated_per_order", "deleted_per_order", "indexes")),
            ", ".join(t["unscanned_indexes"]),
        )
    console.print(table)


def _flat(figures: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested figures as one level (``baseline.per_second``), for a table."""
    flat: dict[str, Any] = {}
    for k, v in figures.items():
        if isinstance(v, dict):
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _entitlement_checks(checks: int, rate: float, *, as_json: bool) -> None:
    """``--entitlement-checks``: the worker set with HTTP servers, one customer, timed checks."""
    from services.registry import WORKERS
    from som.bench import free_port_base, run_entitlement_checks

    base = free_port_base(len(WORKERS))
    with isolated_system("bench", extra_env={"SOM_HEALTH_PORT_BASE": str(base)}) as s:
        figures = run(run_entitlement_checks(s, base + WORKERS.index("entitlements"), checks, rate))
    _show(figures, "entitlement checks (GET /v1/customers/{id}/entitlements)", as_json=as_json)
    if figures["failures"]:
        raise typer.Exit(EXIT_FAILED)
