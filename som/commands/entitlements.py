"""``som entitlements``: what a customer may use (now or at a past instant), grants, snapshots, reconcile."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from services.entitlements import views
from services.entitlements.domain.policy import load_policy
from services.entitlements.reconcile import drift_of
from shared.catalog import cached_catalog
from shared.contracts import events as ev
from shared.contracts.envelope import derived_id, make_event
from shared.messaging import topics
from shared.settings import Settings
from som.common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    UserError,
    console,
    db_pool,
    jsonable,
    publish_events,
    resolved_settings,
    run,
)

app = typer.Typer(
    help="Entitlements: a customer's sets now or at an instant, grants, snapshots, reconcile.",
    no_args_is_help=True,
)


def _instant(text: str) -> datetime:
    """An RFC 3339 time or a date (midnight UTC); a time without zone is UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UserError(f"not a date or time: {text!r}", EXIT_USAGE) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def send_commands(settings: Settings, commands: list[ev.EntitlementCommand]) -> None:
    """Publish commands on ``entitlements.commands``, keyed by customer."""
    events = []
    for cmd in commands:
        correlation = derived_id("operator", cmd.command_id)
        events.append(
            make_event(
                type=ev.ENTITLEMENTS_COMMAND,
                source="som/cli",
                subject=cmd.customer_id,
                data=cmd,
                correlation_id=correlation,
                causation_id=correlation,
            )
        )
    await publish_events(settings, topics.ENTITLEMENTS_COMMANDS, events)


@app.command("show")
def show(
    customer_id: Annotated[str, typer.Argument(help="Internal customer id.")],
    subscription: Annotated[
        str | None, typer.Option("--subscription", help="One subscription's set.")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="Answer from the history at this instant.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What the customer (or one subscription) may use now, or at ``--at`` from the history, and why."""
    settings = resolved_settings()
    when = _instant(at) if at else None

    async def go() -> dict[str, Any]:
        async with db_pool(settings) as pool:
            if when is not None:
                found = await views.set_at(pool, customer_id, when, subscription)
                if found is None:
                    raise UserError(f"no entitlements of {customer_id} at {when.isoformat()}", EXIT_NOT_FOUND)
                return {"customer_id": customer_id, "subscription_id": subscription, "at": when, **found}
            if subscription is not None:
                sets = [
                    s
                    for s in await views.subscription_sets(pool, customer_id)
                    if s["subscription_id"] == subscription
                ]
                if not sets:
                    raise UserError(f"no entitlements of {subscription} for {customer_id}", EXIT_NOT_FOUND)
                s = sets[0]
                return {
                    "customer_id": customer_id,
                    "subscription_id": subscription,
                    "version": s["version"],
                    "body": s["body"],
                    "as_of": s["updated_at"],
                }
            current = await views.customer_set(pool, customer_id)
            if current is None:
                raise UserError(f"no entitlements of {customer_id}", EXIT_NOT_FOUND)
            subs = await views.subscription_sets(pool, customer_id)
            return {
                "customer_id": customer_id,
                "version": current["version"],
                "body": current["body"],
                "as_of": current["updated_at"],
                "subscriptions": {s["subscription_id"]: {"version": s["version"], **s["body"]} for s in subs},
            }

    doc = jsonable(run(go()))
    if as_json:
        console.print_json(data=doc)
        return
    body = doc["body"]
    head = Table(
        show_header=False,
        title=f"entitlements of {customer_id}" + (f" / {subscription}" if subscription else ""),
    )
    for label, value in (
        ("version", doc["version"]),
        ("access", body.get("access")),
        ("features", ", ".join(body.get("features", []))),
        ("limits", ", ".join(f"{k}={v}" for k, v in body.get("limits", {}).items())),
        ("instances", body.get("instances")),
        ("can create instances", body.get("can_create_instances")),
        ("overrides", ", ".join(body.get("overrides", []))),
        ("pending", "; ".join(f"{p['kind']} at {p['effective_at']}" for p in body.get("pending", []))),
        (
            "cause",
            f"{doc.get('cause_command')} by {doc.get('cause_actor')}" if "cause_command" in doc else "",
        ),
    ):
        head.add_row(label, str(value))
    console.print(head)


@app.command("grant")
def grant(
    customer_id: Annotated[str, typer.Argument(help="Internal customer id.")],
    feature: Annotated[str, typer.Option(help="A feature (boolean) or a limit name.")],
    until: Annotated[str, typer.Option(help="End of the grant (exclusive), RFC 3339 or a date.")],
    reason: Annotated[str, typer.Option(help="Why (audited).")],
    value: Annotated[
        int | None, typer.Option(help="Raise the limit to this value; omit for a boolean.")
    ] = None,
    subscription: Annotated[
        str | None, typer.Option("--subscription", help="Only this subscription.")
    ] = None,
    starts: Annotated[
        str | None, typer.Option("--from", help="Start (default: now in business time).")
    ] = None,
    actor: Annotated[str, typer.Option(help="Who grants (audited).")] = "operator",
) -> None:
    """Give a customer (or one subscription) a feature or a higher limit until a date; survives recomputes."""
    settings = resolved_settings()
    end = _instant(until)
    begin = _instant(starts) if starts else None
    if begin is not None and begin >= end:
        raise UserError("--from must be before --until", EXIT_USAGE)
    cmd = ev.EntitlementCommand(
        command="grant",
        customer_id=customer_id,
        command_id=f"grant:{uuid.uuid4()}",
        subscription_id=subscription,
        feature=feature,
        value=value,
        starts_at=begin,
        until=end,
        reason=reason,
        actor=f"user:{actor}",
    )
    run(send_commands(settings, [cmd]))
    console.print(
        f"grant {cmd.command_id} sent: {feature}{'=' + str(value) if value is not None else ''} until {end.isoformat()}"
    )


@app.command("snapshot")
def snapshot(
    customer: Annotated[
        str | None, typer.Option("--customer", help="Only this customer (default: all).")
    ] = None,
) -> None:
    """Publish the current sets again, versions unchanged, for consumers that saw a version gap."""
    settings = resolved_settings()

    async def go() -> int:
        async with db_pool(settings) as pool:
            ids = [customer] if customer else await views.customers(pool)
        tag = uuid.uuid4().hex[:12]
        await send_commands(
            settings,
            [
                ev.EntitlementCommand(command="snapshot", customer_id=c, command_id=f"snapshot:{tag}:{c}")
                for c in ids
            ],
        )
        return len(ids)

    console.print(f"snapshot requested for {run(go())} customer(s)")


@app.command("reconcile")
def reconcile(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report drift only.")] = False,
    customer: Annotated[
        str | None, typer.Option("--customer", help="Only this customer (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recompute every set from the stored subscriptions, the catalog and the policy; report and repair drift,
    and list the sets provisioning has not acknowledged (its applied version is behind).

    Overrides are part of the recomputation, so a deliberate grant is never reverted.
    """
    settings = resolved_settings()
    catalog = cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
    policy = load_policy(settings.entitlement_policy_path)

    behind: list[dict[str, Any]] = []

    async def go() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        repairs: list[ev.EntitlementCommand] = []
        tag = uuid.uuid4().hex[:12]
        async with db_pool(settings) as pool:
            for c in [customer] if customer else await views.customers(pool):
                at, drifts = await drift_of(pool, catalog, policy, c)
                behind.extend(
                    {"customer_id": c, "subscription_id": r["subscription_id"], "version": r["version"],
                     "applied_version": r["applied_version"]}
                    for r in await views.subscription_sets(pool, c)
                    if r["applied_version"] < r["version"]
                )  # fmt: skip
                for d in drifts:
                    found.append(
                        {
                            "customer_id": d.customer_id,
                            "subscription_id": d.subscription_id,
                            "stored_version": d.stored_version,
                            "fields": d.changed_keys(),
                            "stored": d.stored,
                            "recomputed": d.recomputed,
                        }
                    )
                if drifts:
                    repairs.append(
                        ev.EntitlementCommand(
                            command="reconcile",
                            customer_id=c,
                            command_id=f"reconcile:{tag}:{c}",
                            at=at,
                            actor="user:reconcile",
                        )
                    )
        if repairs and not dry_run:
            await send_commands(settings, repairs)
        return found

    drifts = run(go())
    if as_json:
        console.print_json(data=jsonable({"dry_run": dry_run, "drift": drifts, "downstream_behind": behind}))
        return
    table = Table(
        "customer",
        "subscription",
        "stored version",
        "fields",
        title="drift" + (" (dry run)" if dry_run else ""),
    )
    for d in drifts:
        table.add_row(
            d["customer_id"],
            d["subscription_id"] or "(customer)",
            str(d["stored_version"]),
            ", ".join(d["fields"]),
        )
    console.print(table)
    console.print(f"{len(drifts)} drifted set(s)" + ("" if dry_run else "; repair sent"))
    console.print(f"{len(behind)} set(s) not yet acknowledged downstream (applied version < version)")
