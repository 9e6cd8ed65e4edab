"""``som approve`` and ``som reject``: operator commands to the lifecycle."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import typer

from services.lifecycle import views
from shared.contracts import events as ev
from shared.contracts.commands import CommandParams, params_for
from shared.contracts.envelope import derived_id, make_event
from shared.messaging import topics
from shared.settings import Settings
from som.common import EXIT_NOT_FOUND, UserError, console, db_pool, publish_events, resolved_settings, run

app = typer.Typer()


async def send_command(
    command: str,
    subscription_id: str,
    *,
    actor: str,
    reason: str | None,
    params: CommandParams | None = None,
    effective_at: datetime | None = None,
    settings: Settings | None = None,
    source: str = "som/cli",
) -> str:
    """Publish an operator command on subscriptions.commands; returns its idempotency key.

    ``params``: the typed command; without it, ``command`` must be one without parameters.
    ``settings``: where the system is (default: the environment or the ``som up`` running here);
    ``source``: the CloudEvent source (the console sends as ``som/console``).
    """
    settings = settings or resolved_settings()
    key = f"operator:{uuid.uuid4()}"
    from shared.timekeeping import SYSTEM_CLOCK, clock_now

    async with db_pool(settings) as pool:
        found = await views.channel_and_state(pool, subscription_id)
        if found is None:
            raise UserError(f"no subscription {subscription_id}", EXIT_NOT_FOUND)
        channel, state = found
        # An operator acts "now" in the subscription's business time (its test clock, if it has one).
        now = await clock_now(pool, state.get("commercial", {}).get("clock", SYSTEM_CLOCK))
    cmd = ev.SubscriptionCommand(
        subscription_id=subscription_id,
        idempotency_key=key,
        channel=channel,
        effective_at=effective_at or now,
        actor=actor,
        reason=reason,
        params=params or params_for(command),
    )
    correlation = derived_id("operator", key)
    event = make_event(
        type=ev.SUBSCRIPTION_COMMAND,
        source=source,
        subject=subscription_id,
        data=cmd,
        correlation_id=correlation,
        causation_id=correlation,
    )
    await publish_events(settings, topics.SUBSCRIPTIONS_COMMANDS, [event])
    return key


@app.command()
def approve(
    subscription_id: Annotated[str, typer.Argument()],
    actor: Annotated[str, typer.Option(help="Who approves (audit trail).")] = "operator",
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Approve a subscription held in pending_approval."""
    key = run(send_command("approve", subscription_id, actor=f"user:{actor}", reason=reason))
    console.print(f"approve sent for {subscription_id} (idempotency key {key})")


@app.command()
def reject(
    subscription_id: Annotated[str, typer.Argument()],
    actor: Annotated[str, typer.Option(help="Who rejects (audit trail).")] = "operator",
    reason: Annotated[str, typer.Option(help="Why (audit trail).")] = "rejected by operator",
) -> None:
    """Reject a subscription held in pending_approval."""
    key = run(send_command("reject", subscription_id, actor=f"user:{actor}", reason=reason))
    console.print(f"reject sent for {subscription_id} (idempotency key {key})")
