"""``som schemas``: the contracts' JSON Schemas."""

from __future__ import annotations

from typing import Annotated

import typer

from som.common import EXIT_FAILED, console, fail

app = typer.Typer()


@app.command()
def schemas(
    check: Annotated[bool, typer.Option("--check", help="Only report drift; exit 1 if any.")] = False,
) -> None:
    """Generate the JSON Schemas of the contracts into schemas/."""
    from shared.contracts import schemas as gen

    if check:
        stale = gen.drift()
        if stale:
            fail(f"schemas/ is out of date: {', '.join(stale)} (run `som schemas`)", EXIT_FAILED)
        console.print("schemas/ matches the contracts")
        return
    for name in gen.write():
        console.print(f"wrote schemas/{name}")
