"""``som dlq``: inspect and replay dead-lettered messages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from som.common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    UserError,
    console,
    db_pool,
    fail,
    resolved_settings,
    run,
)

app = typer.Typer(help="Inspect and replay dead-lettered messages.", no_args_is_help=True)


@app.command("list")
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
            ("yes" if r["replayed"] else "")
            + (f" (copy of @{r['copy_of_offset']})" if r["copy_of_offset"] is not None else ""),
        )
    console.print(table)


@app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Option(help="The DLQ topic.")],
    offset: Annotated[int | None, typer.Option(help="Record offset; omit with --all.")] = None,
    partition: Annotated[int, typer.Option()] = 0,
    payload: Annotated[
        Path | None, typer.Option(help="Replay this corrected payload instead.", exists=True)
    ] = None,
    all_records: Annotated[
        bool,
        typer.Option("--all", help="Replay every failed message not replayed yet (one copy of each)."),
    ] = False,
    force: Annotated[bool, typer.Option(help="Replay even if replayed before.")] = False,
) -> None:
    """Re-publish dead letters to their original topic; a record is replayed once."""
    from som.dlq import AlreadyReplayed, read_dead_letters, replay

    if offset is None and not all_records:
        fail("give --offset N or --all", EXIT_USAGE)
    settings = resolved_settings()

    async def go() -> list[str]:
        done: list[str] = []
        async with db_pool(settings) as pool:
            letters = await read_dead_letters(str(settings.kafka_bootstrap), [topic], pool)
            chosen = [
                x
                for x in letters
                if (all_records and x.awaits_replay) or (x.offset == offset and x.partition == partition)
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
