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


@app.command()
def asyncapi(
    check: Annotated[bool, typer.Option("--check", help="Only report drift; exit 1 if any.")] = False,
) -> None:
    """Generate schemas/asyncapi.yaml (AsyncAPI 3.0.0): every topic, its payloads, keys and headers."""
    from som import asyncapi as gen

    if check:
        if gen.drifted():
            fail("schemas/asyncapi.yaml is out of date (run `som asyncapi`)", EXIT_FAILED)
        console.print("schemas/asyncapi.yaml matches the code")
        return
    console.print(f"wrote {gen.write().relative_to(gen.OUTPUT.parents[1])}")
