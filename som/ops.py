"""Operator commands over the running system: subscriptions, approvals, test clocks, intake failures."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaProducer
from rich.table import Table

from shared.contracts import events as ev
from shared.contracts.commands import CommandParams, params_for
from shared.contracts.envelope import derived_id, make_event
from shared.messaging import topics
from som.cli import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    UserError,
    app,
    console,
    db_pool,
    isolated_system,
    resolved_settings,
    run,
)

subs_app = typer.Typer(
    help="Review subscriptions: status, plan, users, instances, audit trail.", no_args_is_help=True
)
clock_app = typer.Typer(help="Test clocks: business time that moves only when told to.", no_args_is_help=True)
intake_app = typer.Typer(
    help="Channel intake: failures ranked by impact, normalization, batches.", no_args_is_help=True
)
app.add_typer(subs_app, name="subscriptions")
app.add_typer(clock_app, name="clock")
app.add_typer(intake_app, name="intake")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "as_tuple"):  # Decimal
        return str(value)
    return value


# -- subscriptions -------------------------------------------------------------------------------


@subs_app.command("list")
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
            rows = await pool.fetch(
                "SELECT subscription_id, status, channel, customer_id, plan_id, version, updated_at, "
                "state->'domain'->>'quantity' AS quantity, state->'domain'->>'current_period_end' AS next_renewal "
                "FROM lifecycle.subscriptions WHERE ($1::text IS NULL OR status = $1) "
                "AND ($2::text IS NULL OR channel = $2) AND ($3::text IS NULL OR customer_id = $3) "
                "AND ($4::text IS NULL OR plan_id = $4) ORDER BY updated_at DESC LIMIT $5",
                status,
                channel,
                customer,
                plan,
                limit,
            )
        return [_jsonable(dict(r)) for r in rows]

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


@subs_app.command("show")
def subscriptions_show(
    subscription_id: Annotated[str, typer.Argument(help="Internal subscription id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Status, customer, plan, items, users and roles, instances, scheduled changes and audit history."""
    settings = resolved_settings()

    async def go() -> dict[str, Any]:
        async with db_pool(settings) as pool:
            sub = await pool.fetchrow(
                "SELECT * FROM lifecycle.subscriptions WHERE subscription_id = $1", subscription_id
            )
            if sub is None:
                raise UserError(f"no subscription {subscription_id}", EXIT_NOT_FOUND)
            audit = await pool.fetch(
                "SELECT from_status, to_status, command, actor, reason, effective_at, recorded_at, trace_id "
                "FROM lifecycle.audit_trail WHERE subscription_id = $1 ORDER BY id",
                subscription_id,
            )
            users = await pool.fetch(
                "SELECT user_id, email, role FROM lifecycle.subscription_users "
                "WHERE subscription_id = $1 ORDER BY user_id",
                subscription_id,
            )
            instances = await pool.fetch(
                "SELECT instance_id, status, reported_at FROM lifecycle.instances "
                "WHERE subscription_id = $1 ORDER BY instance_id",
                subscription_id,
            )
            timers = await pool.fetch(
                "SELECT kind, due_at, clock FROM timekeeping.timers WHERE subscription_id = $1 "
                "AND fired_at IS NULL AND cancelled_at IS NULL ORDER BY due_at",
                subscription_id,
            )
        return _jsonable(
            {
                "subscription": dict(sub),
                "users": [dict(u) for u in users],
                "instances": [dict(i) for i in instances],
                "pending_timers": [dict(t) for t in timers],
                "audit": [dict(a) for a in audit],
            }
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
        ("plan", f"{state['plan']['plan_id']} x {state['quantity']} ({state['billing_interval']}, "
                 f"{commercial.get('currency')})"),
        ("add-ons", ", ".join(f"{a['plan']['plan_id']} x {a['quantity']}" for a in state.get("addons", []))),
        ("current period", f"{state.get('current_period_start') or ''} .. {state.get('current_period_end') or ''}"),
        ("next renewal", str(state.get("current_period_end") or "")),
        ("scheduled change", f"{scheduled['plan']['plan_id']} on {scheduled['effective_on']}" if scheduled else ""),
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


# -- commands to the lifecycle ------------------------------------------------------------------


async def send_command(
    command: str,
    subscription_id: str,
    *,
    actor: str,
    reason: str | None,
    params: CommandParams | None = None,
    effective_at: datetime | None = None,
) -> str:
    """Publish an operator command on subscriptions.commands; returns its idempotency key.

    ``params``: the typed command; without it, ``command`` must be one without parameters.
    """
    settings = resolved_settings()
    key = f"operator:{uuid.uuid4()}"
    from shared.timekeeping import SYSTEM_CLOCK, clock_now

    async with db_pool(settings) as pool:
        row = await pool.fetchrow(
            "SELECT channel, state FROM lifecycle.subscriptions WHERE subscription_id = $1", subscription_id
        )
        if row is None:
            raise UserError(f"no subscription {subscription_id}", EXIT_NOT_FOUND)
        # An operator acts "now" in the subscription's business time (its test clock, if it has one).
        now = await clock_now(pool, row["state"].get("commercial", {}).get("clock", SYSTEM_CLOCK))
    cmd = ev.SubscriptionCommand(
        subscription_id=subscription_id,
        idempotency_key=key,
        channel=row["channel"],
        effective_at=effective_at or now,
        actor=actor,
        reason=reason,
        params=params or params_for(command),
    )
    correlation = derived_id("operator", key)
    event = make_event(
        type=ev.SUBSCRIPTION_COMMAND,
        source="som/cli",
        subject=subscription_id,
        data=cmd,
        correlation_id=correlation,
        causation_id=correlation,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            f"{settings.topic_namespace}{topics.SUBSCRIPTIONS_COMMANDS}",
            value=event.model_dump_json().encode(),
            key=subscription_id.encode(),
            headers=[("ce_id", event.id.encode()), ("ce_type", event.type.encode())],
        )
    finally:
        await producer.stop()
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


# -- test clocks ---------------------------------------------------------------------------------

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


@clock_app.command("create")
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


@clock_app.command("advance")
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


# -- intake failures -----------------------------------------------------------------------------


@intake_app.command("failures")
def intake_failures(
    top: Annotated[int, typer.Option(min=1, help="How many.")] = 20,
    since_hours: Annotated[float, typer.Option(help="Look back this many hours.")] = 24.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent rejections ranked by impact (order value x channel weight)."""
    settings = resolved_settings()

    async def go() -> list[dict[str, Any]]:
        async with db_pool(settings) as pool:
            rows = await pool.fetch(
                "SELECT channel, channel_subscription_id, channel_event_id, reasons, impact_score, order_value, "
                "currency, received_at FROM intake.rejections WHERE received_at > now() - make_interval(secs => $2) "
                "ORDER BY impact_score DESC, received_at DESC LIMIT $1",
                top,
                since_hours * 3600,
            )
        return [_jsonable(dict(r)) for r in rows]

    rows = run(go())
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("impact", "channel", "subscription", "reasons", "value", "received")
    for r in rows:
        reasons = ", ".join(f"{x['code']}({x.get('field') or ''})" for x in r["reasons"])
        table.add_row(
            str(r["impact_score"]),
            r["channel"],
            str(r["channel_subscription_id"] or ""),
            reasons,
            f"{r['order_value'] or ''} {r['currency'] or ''}",
            str(r["received_at"]),
        )
    console.print(table)


# -- simulation ----------------------------------------------------------------------------------


@app.command()
def simulate(
    scenario_file: Annotated[
        Path, typer.Argument(help="Scenario YAML (format in the README).", exists=True, dir_okay=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the timeline as JSON.")] = False,
    output: Annotated[Path | None, typer.Option(help="Also write the JSON timeline to this file.")] = None,
) -> None:
    """Run a scenario through the real workers under a test clock and print the timeline."""
    from som.simulate import ScenarioError, load_scenario, run_scenario

    try:
        scenario = load_scenario(scenario_file)
    except ScenarioError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with isolated_system("sim") as s:
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
