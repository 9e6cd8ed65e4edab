"""``som clock``: test clocks, business time that moves only when told to."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from som.common import EXIT_NOT_FOUND, EXIT_USAGE, UserError, console, db_pool, resolved_settings, run

app = typer.Typer(help="Test clocks: business time that moves only when told to.", no_args_is_help=True)

_DURATION = re.compile(r"^(\d+)([dhwm])$")


def parse_target(current: datetime, spec: str) -> datetime:
    """``30d``, ``12h``, ``2w``, ``3m`` (months) after ``current``, or an ISO date/datetime."""
    m = _DURATION.match(spec.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        if unit == "m":
            from shared.periods import add_interval

            return datetime.combine(add_interval(current.date(), f"P{n}M"), current.timetz())
        return current + {"d": timedelta(days=n), "h": timedelta(hours=n), "w": timedelta(weeks=n)}[unit]
    try:
        target = datetime.fromisoformat(spec.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UserError(f"cannot read {spec!r}: use 30d, 12h, 2w, 3m or an ISO date", EXIT_USAGE) from exc
    return target if target.tzinfo else target.replace(tzinfo=UTC)


@app.command("create")
def clock_create(
    name: Annotated[str, typer.Argument()], at: Annotated[str, typer.Option(help="ISO start time.")]
) -> None:
    """Create (or reset) a named test clock at a business time."""
    from shared.timekeeping import create_clock

    settings = resolved_settings()
    when = parse_target(datetime.now(UTC), at)

    async def go() -> None:
        async with db_pool(settings) as pool:
            await create_clock(pool, name, when)

    run(go())
    console.print(f"clock {name} at {when.isoformat()}")


@app.command("advance")
def clock_advance(
    spec: Annotated[str, typer.Argument(help="30d, 12h, 2w, 3m, or a date to move to.")],
    clock: Annotated[str, typer.Option("--clock", help="Test clock name.")] = "default",
) -> None:
    """Move a test clock forward, firing every timer that becomes due, in order."""
    from shared.timekeeping import advance_clock, clock_now

    settings = resolved_settings()

    async def go() -> tuple[datetime, int]:
        async with db_pool(settings) as pool:
            try:
                now = await clock_now(pool, clock)
            except KeyError as exc:
                raise UserError(
                    f"no test clock {clock!r}: create it with `som clock create`", EXIT_NOT_FOUND
                ) from exc
            target = parse_target(now, spec)
            if target < now:
                raise UserError("test clocks only move forward", EXIT_USAGE)
            fired = await advance_clock(
                pool, str(settings.kafka_bootstrap), settings.topic_namespace, clock, target
            )
            return target, fired

    target, fired = run(go())
    console.print(f"clock {clock} now {target.isoformat()}; {fired} timer(s) fired")
