"""``som bench``: throughput and latency from inbound order to invoice."""

from __future__ import annotations

import json
from typing import Annotated

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
) -> None:
    """Measure throughput and p50/p99 latency from inbound order to invoice on billing.invoices."""
    from som.bench import run_bench

    with isolated_system("bench") as s:
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
    if as_json:
        print(json.dumps(result.as_dict()))
    else:
        table = Table("figure", "value", title="order -> invoice")
        for k, v in result.as_dict().items():
            table.add_row(k, str(v))
        console.print(table)
    if result.invoices < result.orders:
        raise typer.Exit(EXIT_FAILED)
