"""``som intake``: failures ranked by impact, normalize a payload, partner batches, the STACKIT poller.

``normalize`` runs the worker's own decision code (``services.intake.pipeline``) on a payload
file without a broker or database. ``batch`` publishes a partner CSV file row by row to
``orders.inbound.direct`` and waits for each row's outcome on the topics
(``services.intake.batch_runner``). ``poll-stackit`` runs the STACKIT poller of the intake worker by hand.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from aiokafka import AIOKafkaProducer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.intake import views
from services.intake.batch_runner import BatchError, BatchSummary, run_batch
from shared.contracts.canonical import CHANNELS
from shared.settings import Settings, get_settings
from som.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    UserError,
    console,
    db_pool,
    err,
    jsonable,
    resolved_settings,
    run,
)

if TYPE_CHECKING:
    from services.intake.pipeline import ChannelAuth

app = typer.Typer(
    help="Channel intake: failures ranked by impact, normalization, batches.", no_args_is_help=True
)


@app.command("failures")
def intake_failures(
    top: Annotated[int, typer.Option(min=1, help="How many.")] = 20,
    since_hours: Annotated[float, typer.Option(help="Look back this many hours.")] = 24.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent rejections ranked by impact (order value x channel weight)."""
    settings = resolved_settings()

    async def go() -> list[dict[str, Any]]:
        async with db_pool(settings) as pool:
            rows = await views.recent_rejections(pool, top=top, since_hours=since_hours)
        return [jsonable(r) for r in rows]

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


# -- normalize -------------------------------------------------------------------------------------


def channel_name(name: str) -> str:
    """A channel name, accepting the sample folder names (``aws`` for ``aws_marketplace``)."""
    if name in CHANNELS:
        return name
    if f"{name}_marketplace" in CHANNELS:
        return f"{name}_marketplace"
    raise UserError(f"unknown channel {name!r}; choose from {', '.join(CHANNELS)}", EXIT_USAGE)


def _read_bytes(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from exc


def load_transport(path: Path) -> dict[str, Any]:
    """A transport file: a JSON object, or a sample's ``.expected.json`` (its ``transport`` is used)."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from exc
    except ValueError as exc:
        raise UserError(f"{path} is not JSON: {exc}", EXIT_USAGE) from exc
    if not isinstance(doc, dict):
        raise UserError(f"{path} must hold a JSON object", EXIT_USAGE)
    if "canonical" in doc and "channel" in doc:  # an expected file of the samples
        found = doc.get("transport") or {}
        return found if isinstance(found, dict) else {}
    return doc


def _received_at(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        if value.isdigit():
            return datetime.fromtimestamp(int(value), UTC)
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UserError(f"--received-at: not an ISO time or epoch seconds: {value!r}", EXIT_USAGE) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _with_sns_certificate(channel: str, body: bytes, auth: ChannelAuth) -> ChannelAuth:
    """The checks, knowing the SNS signing certificate the envelope names (pinned, else fetched from
    an AWS-owned ``SigningCertURL`` as the worker does); unchanged for anything but a signed SNS envelope."""
    from services.intake.pipeline import sns_envelope
    from services.intake.sns_certs import SnsCertificates

    envelope = sns_envelope(channel, body) if auth.sns else None
    url = (envelope.get("SigningCertURL") or envelope.get("SigningCertUrl")) if envelope else None
    if not isinstance(url, str) or url in auth.sns_certificates:
        return auth
    return auth.with_certificate(url, asyncio.run(SnsCertificates({}).get(url)))


@app.command("normalize")
def intake_normalize(
    payload_file: Annotated[str, typer.Argument(help="The channel payload (raw bytes), or - for stdin.")],
    channel: Annotated[str, typer.Option("--channel", help=f"One of: {', '.join(CHANNELS)}.")],
    transport: Annotated[
        Path | None,
        typer.Option(help="JSON transport context (headers, poll context), or a sample's .expected.json."),
    ] = None,
    received_at: Annotated[
        str | None,
        typer.Option(help="Receipt time for signature checks (ISO or epoch seconds; default now)."),
    ] = None,
    verify: Annotated[
        bool | None,
        typer.Option(
            "--verify/--no-verify",
            help=(
                "--verify: every authenticity check the worker runs with the configured keys (HMAC,"
                " Azure/GCP JWT, AWS SNS); --no-verify: none; default: HMAC secrets only."
            ),
        ),
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="Delivery region, as the worker's `region` header.")
    ] = None,
) -> None:
    """Print what a payload means, as the intake worker decides it: a JSON list, one entry per change.

    Each entry has the disposition (apply, drop_*, rejected, dead_letter), the outcome
    (accepted, rejected, dropped, dead_letter), reasons, the mapped catalog plan, the policy's
    approval, and the lifecycle command an accepted change becomes. Customer credit is not
    looked up (no database). Exit codes: 0 accepted or dropped, 1 rejected or unparseable
    (dead letter), 2 usage error (unknown channel, unreadable file, transport not a JSON object).
    """
    from services.intake.pipeline import channel_auth, channel_secrets, interpret
    from shared.catalog import cached_catalog

    try:
        name = channel_name(channel)
        body = _read_bytes(payload_file)
        context = load_transport(transport) if transport else None
        when = _received_at(received_at)
    except UserError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(exc.code) from exc
    settings = get_settings()
    catalog = cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
    secrets: Mapping[str, Sequence[str]] | ChannelAuth = {}
    if verify is None:
        secrets = channel_secrets(settings.stripe_webhook_secret, settings.shopify_webhook_secret)
    elif verify:
        secrets = _with_sns_certificate(name, body, channel_auth(settings))
    meaning = interpret(name, body, context, catalog=catalog, secrets=secrets, now=when, region=region)
    print(json.dumps(meaning.as_list(), indent=2, ensure_ascii=False))
    if meaning.disposition == "dead_letter":
        err.print(
            f"[red]unparseable[/red] ({meaning.error_code}): {meaning.error_message}; the worker dead-letters it"
        )
        raise typer.Exit(EXIT_FAILED)
    if not meaning.accepted:
        codes = sorted({r["code"] for e in meaning.as_list() for r in e.get("reasons", [])})
        err.print(f"[yellow]rejected[/yellow]: {', '.join(codes)}")
        raise typer.Exit(EXIT_FAILED)


# -- batch -----------------------------------------------------------------------------------------


async def _batch(settings: Settings, data: bytes, **options: Any) -> BatchSummary:
    """The batch runner, its warnings on stderr and its refusals as user errors."""
    try:
        return await run_batch(settings, data, warn=lambda m: err.print(f"[yellow]{m}[/yellow]"), **options)
    except BatchError as exc:
        raise UserError(str(exc), EXIT_FAILED) from exc


@app.command("batch")
def intake_batch(
    file: Annotated[Path, typer.Argument(help="Partner CSV file (columns in docs/intake.md §9).")],
    channel: Annotated[
        str,
        typer.Option(
            help="Channel whose plan ids the channel_plan_id column holds, for rows without source_channel."
        ),
    ] = "direct",
    timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait for outcomes (default 60 + 0.05 per row).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    test_clock: Annotated[
        str | None, typer.Option(help="Put the subscriptions on this test clock (som clock create).")
    ] = None,
) -> None:
    """Publish each row as its own direct order, wait for every row's outcome, print a summary.

    Accepted: the row's command arrived on subscriptions.commands; rejected: its rejection on
    orders.rejected, or the row could not be parsed here (with its reason). Exit 0 when every
    row has an outcome (rejections included), 1 when some had none within the timeout.
    """
    if not file.exists():
        err.print(f"[red]error:[/red] no such file: {file}")
        raise typer.Exit(EXIT_USAGE)
    try:
        name = channel_name(channel)
    except UserError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(exc.code) from exc
    settings = resolved_settings()
    data = file.read_bytes()
    headers = {"som-test-clock": test_clock} if test_clock else None
    if as_json:
        summary = run(
            _batch(settings, data, file_name=str(file), channel=name, timeout=timeout, headers=headers)
        )
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        ) as bar:
            published = bar.add_task("published", total=None)
            settled = bar.add_task("outcomes ", total=None)
            summary = run(
                _batch(
                    settings,
                    data,
                    file_name=str(file),
                    channel=name,
                    timeout=timeout,
                    headers=headers,
                    on_published=lambda n, total: bar.update(published, completed=n, total=total),
                    on_outcome=lambda n, total: bar.update(settled, completed=n, total=total),
                )
            )
        _print_summary(summary)
    if summary.no_outcome:
        raise typer.Exit(EXIT_FAILED)


def _print_summary(summary: BatchSummary) -> None:
    table = Table(show_header=False, title=f"batch {summary.file}")
    for label, value in (
        ("rows", summary.rows),
        ("published", summary.published),
        ("accepted", summary.accepted),
        ("  of them accepted in an earlier run", summary.accepted_before),
        ("rejected", summary.rejected),
        ("  of them rejected locally", summary.rejected_locally),
        ("  of them rejected in an earlier run", summary.rejected_before),
        ("no outcome", summary.no_outcome),
        ("seconds", summary.seconds),
        ("rows per second", summary.rows_per_second),
    ):
        table.add_row(label, str(value))
    console.print(table)
    if summary.by_reason:
        reasons = Table("reason", "rows", title="rejected by reason")
        for code, count in summary.by_reason.items():
            reasons.add_row(code, str(count))
        console.print(reasons)
    refused = [o for o in summary.outcomes if o.outcome == "rejected"][:20]
    if refused:
        detail = Table("row", "order", "reasons", title="first rejected rows (all with --json)")
        for o in refused:
            detail.add_row(
                str(o.row_number),
                str(o.order_id or ""),
                "; ".join(f"{r.get('code')} {r.get('field') or ''}".strip() for r in o.reasons),
            )
        console.print(detail)


# -- STACKIT poller --------------------------------------------------------------------------------


async def poll_stackit_once(settings: Settings) -> dict[str, Any]:
    """One poll with this process's own outbox drain (works with or without an intake worker running)."""
    from services.intake.stackit_poller import StackitApiError, StackitPoller
    from shared.db.uow import Database
    from shared.messaging.relay import OutboxRelay

    async with db_pool(settings) as pool:
        db = Database(pool, namespace=settings.topic_namespace)
        poller = StackitPoller.from_settings(settings, db)
        try:
            report = await poller.poll_once()
        except StackitApiError as exc:
            raise UserError(f"STACKIT vendor API: {exc}", EXIT_FAILED) from exc
        finally:
            await poller.client.aclose()
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            relayed = await OutboxRelay(pool, producer, f"{settings.topic_namespace}intake").drain()
        finally:
            await producer.stop()
    return {**report.as_dict(), "relayed": relayed}


@app.command("poll-stackit")
def intake_poll_stackit(
    once: Annotated[
        bool, typer.Option("--once", help="Poll once and exit (default: poll until Ctrl-C).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Poll the STACKIT vendor API: publish changed subscriptions, approve or reject pending ones.

    Needs SOM_STACKIT_BASE_URL, SOM_STACKIT_PROJECT_ID and SOM_STACKIT_TOKEN. The intake
    worker does the same in the background when SOM_STACKIT_BASE_URL is set.
    """
    settings = resolved_settings()
    if not settings.stackit_base_url or not settings.stackit_project_id:
        err.print(
            "[red]error:[/red] set SOM_STACKIT_BASE_URL and SOM_STACKIT_PROJECT_ID (and SOM_STACKIT_TOKEN)"
        )
        raise typer.Exit(EXIT_USAGE)
    while True:
        report = run(poll_stackit_once(settings))
        if as_json:
            print(json.dumps(report))
        else:
            console.print(
                f"listed {report['listed']}, published {report['published']} change(s), "
                f"approved {len(report['approved'])}, rejected {len(report['rejected'])}, "
                f"awaiting an operator {len(report['awaiting_operator'])}"
                + (
                    f", [red]{len(report['errors'])} error(s)[/red]: {'; '.join(report['errors'])}"
                    if report["errors"]
                    else ""
                )
                + (" (another poller holds the lock: skipped)" if report["skipped"] else "")
            )
        if once:
            if report["errors"]:
                raise typer.Exit(EXIT_FAILED)
            return
        try:
            time.sleep(settings.stackit_poll_seconds)
        except KeyboardInterrupt:
            return
