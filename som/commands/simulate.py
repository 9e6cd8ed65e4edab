"""``som simulate``: a scenario through the real workers under a test clock."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shared.contracts import events as ev
from som.common import EXIT_FAILED, console, isolated_system, run

app = typer.Typer()


@app.command()
def simulate(
    scenario_file: Annotated[
        Path, typer.Argument(help="Scenario YAML (format in the README).", exists=True, dir_okay=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the timeline as JSON.")] = False,
    output: Annotated[Path | None, typer.Option(help="Also write the JSON timeline to this file.")] = None,
) -> None:
    """Run a scenario through the real workers under a test clock and print the timeline."""
    from som.simulate import ScenarioError, convention_files, load_scenario, run_scenario

    try:
        scenario = load_scenario(scenario_file)
    except ScenarioError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with tempfile.TemporaryDirectory(prefix="som-sim-") as folder:
        extra_env: dict[str, str] | None = None
        if scenario.conventions is not None:
            try:
                extra_env = convention_files(scenario.conventions, Path(folder))
            except ScenarioError as exc:
                raise typer.BadParameter(str(exc)) from exc
        with isolated_system("sim", extra_env=extra_env) as s:
            result = run(run_scenario(s, scenario))
    text = json.dumps(result, indent=2, default=str)
    if output:
        output.write_text(text + "\n")
    if as_json:
        print(text)
    else:
        _print_timeline(result)
    if result["final_status"] is None:
        raise typer.Exit(EXIT_FAILED)


def _print_timeline(result: dict[str, Any]) -> None:
    table = Table("time", "what", "detail", title=f"{result['scenario']} ({result['subscription_id']})")
    for e in result["timeline"]:
        if e["type"] == ev.SUBSCRIPTION_STATE_CHANGED:
            detail = f"{e['command']}: {e['plan']} x{e['quantity']} {e['period']}"
        elif "total" in e:
            detail = f"{e['total']} {e['currency']} (due {e['amount_due']}); " + "; ".join(
                f"{line['kind']} {line['amount']}" for line in e["lines"]
            )
        elif "features" in e:
            detail = ", ".join(e["features"]) or "(none)"
        else:
            detail = ""
        table.add_row(str(e["time"])[:19], str(e["what"]), detail)
    console.print(table)
    console.print(f"final status: [bold]{result['final_status']}[/bold]; totals: {result['totals']}")
    for r in result["command_rejections"]:
        console.print(f"[yellow]command rejected:[/yellow] {r['command']}: {r['reason_code']} {r['message']}")
