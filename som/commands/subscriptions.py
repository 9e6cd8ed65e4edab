"""``som subscriptions``: review subscriptions (status, plan, users, instances, audit trail)."""

from __future__ import annotations

from typing import Annotated, Any, cast

import typer
from rich.table import Table

from services.lifecycle import views
from shared.timekeeping import pending_timers
from som.common import EXIT_NOT_FOUND, UserError, console, db_pool, jsonable, resolved_settings, run

app = typer.Typer(
    help="Review subscriptions: status, plan, users, instances, audit trail.", no_args_is_help=True
)


@app.command("list")
def subscriptions_list(
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    channel: Annotated[str | None, typer.Option()] = None,
    customer: Annotated[str | None, typer.Option(help="Internal customer id.")] = None,
    plan: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List subscriptions with filters."""
    settings = resolved_settings()

    async def go() -> list[dict[str, Any]]:
        async with db_pool(settings) as pool:
            rows = await views.list_subscriptions(
                pool, status=status, channel=channel, customer=customer, plan=plan, limit=limit
            )
        return [jsonable(r) for r in rows]

    rows = run(go())
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("subscription", "status", "channel", "customer", "plan", "qty", "next renewal", "version")
    for r in rows:
        table.add_row(
            r["subscription_id"],
            r["status"],
            r["channel"],
            r["customer_id"],
            r["plan_id"],
            str(r["quantity"]),
            str(r["next_renewal"] or ""),
            str(r["version"]),
        )
    console.print(table)


@app.command("show")
def subscriptions_show(
    subscription_id: Annotated[str, typer.Argument(help="Internal subscription id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Status, customer, plan, items, users and roles, instances, scheduled changes and audit history."""
    settings = resolved_settings()

    async def go() -> dict[str, Any]:
        async with db_pool(settings) as pool:
            sub = await views.subscription(pool, subscription_id)
            if sub is None:
                raise UserError(f"no subscription {subscription_id}", EXIT_NOT_FOUND)
            audit = await views.audit_trail(pool, subscription_id)
            users = await views.users(pool, subscription_id)
            instances = await views.instances(pool, subscription_id)
            timers = await pending_timers(pool, subscription_id)
        return cast(
            dict[str, Any],
            jsonable(
                {
                    "subscription": sub,
                    "users": users,
                    "instances": instances,
                    "pending_timers": [{k: t[k] for k in ("kind", "due_at", "clock")} for t in timers],
                    "audit": audit,
                }
            ),
        )

    doc = run(go())
    if as_json:
        console.print_json(data=doc)
        return
    sub, state = doc["subscription"], doc["subscription"]["state"]["domain"]
    commercial = doc["subscription"]["state"]["commercial"]
    scheduled = state.get("scheduled_change")
    head = Table(show_header=False, title=f"subscription {subscription_id}")
    for label, value in (
        ("status", sub["status"]),
        ("channel", sub["channel"]),
        ("customer", sub["customer_id"]),
        (
            "plan",
            f"{state['plan']['plan_id']} x {state['quantity']} ({state['billing_interval']}, "
            f"{commercial.get('currency')})",
        ),
        ("add-ons", ", ".join(f"{a['plan']['plan_id']} x {a['quantity']}" for a in state.get("addons", []))),
        (
            "current period",
            f"{state.get('current_period_start') or ''} .. {state.get('current_period_end') or ''}",
        ),
        ("next renewal", str(state.get("current_period_end") or "")),
        (
            "scheduled change",
            f"{scheduled['plan']['plan_id']} on {scheduled['effective_on']}" if scheduled else "",
        ),
        ("clock", str(commercial.get("clock", "system"))),
    ):
        head.add_row(label, str(value))
    console.print(head)
    for title, rows, cols in (
        ("users and roles", doc["users"], ("user_id", "email", "role")),
        ("instances", doc["instances"], ("instance_id", "status", "reported_at")),
        ("pending timers", doc["pending_timers"], ("kind", "due_at", "clock")),
        (
            "audit trail",
            doc["audit"],
            ("effective_at", "from_status", "to_status", "command", "actor", "reason"),
        ),
    ):
        t = Table(*cols, title=title)
        for r in rows:
            t.add_row(*(str(r[c] if r[c] is not None else "") for c in cols))
        console.print(t)
