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


users_app = typer.Typer(help="Users and roles of a subscription (audited; the check API answers per user).")
app.add_typer(users_app, name="users")


def _user_change(subscription_id: str, email: str, role: str | None, actor: str, reason: str | None) -> str:
    """Send a user change to the entitlements worker; returns its command id."""
    import uuid

    from services.entitlements import views as entitlement_views
    from shared.contracts import events as ev
    from som.commands.entitlements import send_commands

    settings = resolved_settings()

    async def go() -> str:
        async with db_pool(settings) as pool:
            customer = await entitlement_views.customer_of(pool, subscription_id)
        if customer is None:
            raise UserError(f"no subscription {subscription_id} with entitlements", EXIT_NOT_FOUND)
        cmd = ev.EntitlementCommand(
            command="user_add" if role else "user_remove",
            customer_id=customer,
            command_id=f"user:{uuid.uuid4()}",
            subscription_id=subscription_id,
            email=email,
            role=cast(Any, role),
            actor=f"user:{actor}",
            reason=reason,
        )
        await send_commands(settings, [cmd])
        return cmd.command_id

    return run(go())


@users_app.command("add")
def users_add(
    subscription_id: Annotated[str, typer.Argument(help="Internal subscription id.")],
    email: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Option(help="owner | admin | editor | reader")] = "reader",
    actor: Annotated[str, typer.Option(help="Who (audited).")] = "operator",
    reason: Annotated[str | None, typer.Option(help="Why (audited).")] = None,
) -> None:
    """Give a user a role on a subscription (or change it)."""
    if role not in ("owner", "admin", "editor", "reader"):
        raise typer.BadParameter("role must be owner, admin, editor or reader", param_hint="--role")
    command_id = _user_change(subscription_id, email, role, actor, reason)
    console.print(f"{email} -> {role} on {subscription_id} sent ({command_id})")


@users_app.command("remove")
def users_remove(
    subscription_id: Annotated[str, typer.Argument(help="Internal subscription id.")],
    email: Annotated[str, typer.Argument()],
    actor: Annotated[str, typer.Option(help="Who (audited).")] = "operator",
    reason: Annotated[str | None, typer.Option(help="Why (audited).")] = None,
) -> None:
    """Take a user's role on a subscription away."""
    command_id = _user_change(subscription_id, email, None, actor, reason)
    console.print(f"{email} removed from {subscription_id} ({command_id})")
