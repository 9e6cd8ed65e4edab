"""``som billing replenishment``: show a replenishment subscription, skip or delay its next delivery."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from shared.contracts import events as ev
from shared.contracts.commands import DelayNextParams, ReplenishmentParams, SkipNextParams
from shared.contracts.envelope import derived_id, make_event
from shared.messaging import topics
from shared.settings import Settings
from som.common import (
    EXIT_NOT_FOUND,
    UserError,
    console,
    db_pool,
    jsonable,
    publish_events,
    resolved_settings,
    run,
)

app = typer.Typer(help="Replenishment subscriptions: cycles, skip, delay.", no_args_is_help=True)


async def _state(settings: Settings, subscription_id: str) -> dict[str, Any]:
    from services.billing import replenishment_store

    async with db_pool(settings) as pool:
        state = await replenishment_store.load(pool, subscription_id)
    if state is None:
        raise UserError(
            f"{subscription_id} is not a replenishment subscription billing knows", EXIT_NOT_FOUND
        )
    return state.model_dump(mode="json")


async def _send(settings: Settings, subscription_id: str, params: ReplenishmentParams, key: str) -> None:
    await _state(settings, subscription_id)  # an unknown subscription is an error here, not a dead letter
    cmd = ev.ReplenishmentCommand(subscription_id=subscription_id, command_id=key, params=params)
    correlation = derived_id("operator", key)
    event = make_event(
        type=ev.REPLENISHMENT_COMMAND,
        source="som/cli",
        subject=subscription_id,
        data=cmd,
        correlation_id=correlation,
        causation_id=correlation,
    )
    await publish_events(settings, topics.REPLENISHMENT_COMMANDS, [event])


KeyOption = Annotated[
    str | None, typer.Option("--key", help="Idempotency key (the same key again applies once); default: new.")
]


@app.command("show")
def replenishment_show(
    subscription_id: Annotated[str, typer.Argument(help="Internal subscription id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Next due date, cycles run and skipped, quantity and the last unit price."""
    state = run(_state(resolved_settings(), subscription_id))
    if as_json:
        console.print_json(data=jsonable(state))
        return
    console.print(
        f"{subscription_id}: {state['quantity']} x {state['sku']} every cycle, next due {state['next_due']}"
        f"{' (ended)' if state['ended'] else ''}; cycles run {state['cycle']}, last unit price "
        f"{state['last_unit_amount'] or '-'} {state['currency']}; skipped {', '.join(state['skipped']) or 'none'}"
    )


@app.command("skip")
def replenishment_skip(
    subscription_id: Annotated[str, typer.Argument(help="Internal subscription id.")], key: KeyOption = None
) -> None:
    """Skip the next delivery (not delivered, not billed)."""
    k = key or f"cli:{uuid.uuid4()}"
    run(_send(resolved_settings(), subscription_id, SkipNextParams(), k))
    console.print(f"skip of the next delivery of {subscription_id} sent (key {k})")


@app.command("delay")
def replenishment_delay(
    subscription_id: Annotated[str, typer.Argument(help="Internal subscription id.")],
    days: Annotated[int, typer.Option("--days", min=1, max=365, help="Days to move the next delivery.")],
    key: KeyOption = None,
) -> None:
    """Move the next delivery ``--days`` later."""
    k = key or f"cli:{uuid.uuid4()}"
    run(_send(resolved_settings(), subscription_id, DelayNextParams(days=days), k))
    console.print(f"delay of the next delivery of {subscription_id} by {days} days sent (key {k})")
