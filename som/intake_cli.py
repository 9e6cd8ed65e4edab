"""``som intake normalize``, ``som intake batch`` and ``som intake poll-stackit``.

``normalize`` runs the worker's own decision code (``services.intake.pipeline``) on a payload
file without a broker or database. ``batch`` publishes a partner CSV file row by row to
``orders.inbound.direct`` and waits for each row's outcome on the topics. ``poll-stackit``
runs the STACKIT poller of the intake worker by hand.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.contracts.canonical import CHANNELS
from shared.messaging import topics
from shared.settings import Settings, get_settings
from som.cli import EXIT_FAILED, EXIT_USAGE, UserError, console, db_pool, err, resolved_settings, run
from som.ops import intake_app

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


@intake_app.command("normalize")
def intake_normalize(
    payload_file: Annotated[str, typer.Argument(help="The channel payload (raw bytes), or - for stdin.")],
    channel: Annotated[str, typer.Option("--channel", help=f"One of: {', '.join(CHANNELS)}.")],
    transport: Annotated[
        Path | None,
        typer.Option(help="JSON transport context (headers, poll context), or a sample's .expected.json."),
    ] = None,
    received_at: Annotated[
        str | None, typer.Option(help="Receipt time for signature checks (ISO or epoch seconds; default now).")
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Check signatures where a secret is configured.")
    ] = True,
    region: Annotated[str | None, typer.Option(help="Delivery region, as the worker's `region` header.")] = None,
) -> None:
    """Print what a payload means, as the intake worker decides it: a JSON list, one entry per change.

    Each entry has the disposition (apply, drop_*, rejected, dead_letter), the outcome
    (accepted, rejected, dropped, dead_letter), reasons, the mapped catalog plan, the policy's
    approval, and the lifecycle command an accepted change becomes. Customer credit is not
    looked up (no database). Exit codes: 0 accepted or dropped, 1 rejected or unparseable
    (dead letter), 2 usage error (unknown channel, unreadable file, transport not a JSON object).
    """
    from services.intake.pipeline import channel_secrets, interpret
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
    secrets = channel_secrets(settings.stripe_webhook_secret, settings.shopify_webhook_secret) if verify else {}
    meaning = interpret(name, body, context, catalog=catalog, secrets=secrets, now=when, region=region)
    print(json.dumps(meaning.as_list(), indent=2, ensure_ascii=False))
    if meaning.disposition == "dead_letter":
        err.print(f"[red]unparseable[/red] ({meaning.error_code}): {meaning.error_message}; the worker dead-letters it")
        raise typer.Exit(EXIT_FAILED)
    if not meaning.accepted:
        codes = sorted({r["code"] for e in meaning.as_list() for r in e.get("reasons", [])})
        err.print(f"[yellow]rejected[/yellow]: {', '.join(codes)}")
        raise typer.Exit(EXIT_FAILED)


# -- batch -----------------------------------------------------------------------------------------


@dataclass
class RowOutcome:
    """Where one CSV row ended."""

    row_number: int
    order_id: str | None
    outcome: str  # accepted | rejected | no_outcome
    reasons: list[dict[str, Any]] = field(default_factory=list)
    where: str = ""  # local | topic | database


@dataclass
class BatchSummary:
    """The result of one batch run."""

    file: str
    rows: int
    published: int
    accepted: int
    rejected: int
    no_outcome: int
    by_reason: dict[str, int]
    rejected_locally: int
    accepted_before: int  # orders intake had accepted in an earlier run (no new command)
    rejected_before: int  # the very same row refused in an earlier run (no new rejection)
    publish_seconds: float
    seconds: float
    rows_per_second: float
    outcomes: list[RowOutcome] = field(default_factory=list)

    def as_dict(self, *, with_rows: bool = True) -> dict[str, Any]:
        """JSON-ready form; ``rejected_rows`` lists each refused row with its reasons."""
        doc = {k: v for k, v in self.__dict__.items() if k != "outcomes"}
        if with_rows:
            doc["rejected_rows"] = [
                {"row": o.row_number, "order_id": o.order_id, "reasons": o.reasons, "where": o.where}
                for o in self.outcomes if o.outcome == "rejected"
            ]
            doc["rows_without_outcome"] = [
                {"row": o.row_number, "order_id": o.order_id} for o in self.outcomes if o.outcome == "no_outcome"
            ]
        return doc


def _reason_dicts(reasons: Any) -> list[dict[str, Any]]:
    return [r.model_dump() for r in reasons]


async def _known_before(settings: Settings, rows: list[Any]) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Rows whose outcome exists already and will not come again on the topics.

    An order id intake accepted before is never applied twice (no new command); the very same
    bytes processed before are dropped by the worker's inbox (no new rejection either).
    """
    from shared.messaging.runtime import Incoming, content_id

    if not rows or not settings.database_url:
        return {}
    by_hash = {
        content_id(Incoming(topics.inbound("direct"), None, r.payload, {}, 0, 0, 0)): r.order_id for r in rows
    }
    ids = [r.order_id for r in rows]
    found: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    try:
        async with db_pool(settings) as pool:
            for r in await pool.fetch(
                "SELECT order_key FROM intake.orders WHERE channel = 'direct' AND order_key = ANY($1::text[])", ids
            ):
                found[r["order_key"]] = ("accepted", [])
            seen = await pool.fetch(
                "SELECT event_id FROM messaging.inbox WHERE consumer_group = $1 AND event_id = ANY($2::text[])",
                settings.group("intake"), list(by_hash),
            )
            again = [by_hash[r["event_id"]] for r in seen if by_hash[r["event_id"]] not in found]
            if again:
                for r in await pool.fetch(
                    "SELECT DISTINCT ON (channel_event_id) channel_event_id, reasons FROM intake.rejections "
                    "WHERE channel = 'direct' AND channel_event_id = ANY($1::text[]) ORDER BY channel_event_id, id DESC",
                    again,
                ):
                    found[r["channel_event_id"]] = ("rejected", list(r["reasons"]))
    except Exception as exc:  # without the database every row is simply waited for on the topics
        err.print(f"[yellow]could not look up earlier outcomes: {exc}[/yellow]")
        return {}
    return found


async def _tail(consumer: AIOKafkaConsumer, names: list[str]) -> None:
    """Assign every partition of ``names`` at its current end (positions resolved now)."""
    tps: list[TopicPartition] = []
    for name in names:
        parts = consumer.partitions_for_topic(name)
        for _ in range(50):
            if parts:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
            parts = consumer.partitions_for_topic(name)
        if not parts:
            raise UserError(f"topic {name} does not exist: run `som topics`", EXIT_FAILED)
        tps.extend(TopicPartition(name, p) for p in sorted(parts))
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)


async def run_batch(
    settings: Settings,
    data: bytes,
    *,
    file_name: str = "-",
    channel: str = "direct",
    timeout: float | None = None,
    headers: dict[str, str] | None = None,
    on_published: Callable[[int, int], None] | None = None,
    on_outcome: Callable[[int, int], None] | None = None,
    lookup_database: bool = True,
) -> BatchSummary:
    """Publish every parseable row as a direct order, wait for every row's outcome, summarize.

    Outcomes are read from ``subscriptions.commands`` (accepted: the command whose idempotency
    key is ``direct:<order_id>``) and ``orders.rejected`` (``channel_event_id`` = order id).
    Rows decided before (an order id intake accepted, or the very same row it refused: the
    file sent twice) would get no new outcome on the topics: their outcome is read from the
    database and they are not sent again.
    """
    from services.intake.domain.batch import parse_csv
    from shared.catalog import cached_catalog

    assert settings.kafka_bootstrap
    catalog = cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
    rows = parse_csv(data, catalog=catalog, default_source_channel=channel)
    fatal = [r for r in rows if r.row_number == 0]
    if fatal:
        text = "; ".join(f"{x.code}: {x.message}" for r in fatal for x in r.reasons)
        raise UserError(f"{file_name}: {text}", EXIT_FAILED)
    started = time.perf_counter()
    outcomes: dict[int, RowOutcome] = {}
    pending: dict[str, int] = {}  # order id -> row number
    publishable = []
    for row in rows:
        if row.ok and row.payload is not None and row.order_id:
            publishable.append(row)
            pending[row.order_id] = row.row_number
        else:
            outcomes[row.row_number] = RowOutcome(
                row.row_number, row.order_id, "rejected", _reason_dicts(row.reasons), "local"
            )
    ns = settings.topic_namespace
    known_before = await _known_before(settings, publishable) if lookup_database else {}
    for order_id, (prior, prior_reasons) in known_before.items():
        number = pending.pop(order_id)
        outcomes[number] = RowOutcome(number, order_id, prior, prior_reasons, "database")
    # Decided before: sending them again would only queue duplicates in front of the new rows.
    to_send = [r for r in publishable if r.order_id not in known_before]
    commands_topic, rejected_topic = f"{ns}{topics.SUBSCRIPTIONS_COMMANDS}", f"{ns}{topics.ORDERS_REJECTED}"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 << 20
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    publish_seconds = 0.0
    try:
        await _tail(consumer, [commands_topic, rejected_topic])
        total = len(to_send)
        done_count = len(outcomes)
        if on_outcome:
            on_outcome(done_count, len(rows))

        def resolve(order_id: str, outcome: RowOutcome) -> None:
            nonlocal done_count
            number = pending.pop(order_id, None)
            if number is None:
                return
            outcome.row_number = number
            outcomes[number] = outcome
            done_count += 1
            if on_outcome:
                on_outcome(done_count, len(rows))

        async def collect() -> None:
            while pending:
                batch = await consumer.getmany(timeout_ms=300, max_records=5000)
                for tp, records in batch.items():
                    for rec in records:
                        try:
                            data_ = json.loads(rec.value)["data"]
                        except (ValueError, KeyError, TypeError):
                            continue
                        if data_.get("channel") != "direct":
                            continue
                        if tp.topic == commands_topic:
                            key = str(data_.get("idempotency_key") or "")
                            order_id = key.removeprefix("direct:")
                            if key.startswith("direct:") and order_id in pending:
                                resolve(order_id, RowOutcome(0, order_id, "accepted", where="topic"))
                        else:
                            order_id = str(data_.get("channel_event_id") or "")
                            if order_id in pending:
                                reasons = data_.get("reasons") or []
                                resolve(order_id, RowOutcome(0, order_id, "rejected", reasons, "topic"))

        collector = asyncio.create_task(collect())
        topic = f"{ns}{topics.inbound('direct')}"
        wire_headers = [(k, v.encode()) for k, v in (headers or {}).items()]
        sent = 0
        futures = []
        for row in to_send:
            assert row.payload is not None and row.order_id is not None
            key = (row.change.channel_subscription_id if row.change else None) or row.order_id
            fut = await producer.send(topic, value=row.payload, key=key.encode(), headers=wire_headers)
            futures.append(fut)
            if len(futures) >= 1000:
                await asyncio.gather(*futures)
                sent += len(futures)
                futures.clear()
                if on_published:
                    on_published(sent, total)
        if futures:
            await asyncio.gather(*futures)
            sent += len(futures)
        if on_published:
            on_published(sent, total)
        publish_seconds = time.perf_counter() - started
        limit = timeout if timeout is not None else 60.0 + 0.05 * total
        try:
            await asyncio.wait_for(asyncio.shield(collector), timeout=limit)
        except TimeoutError:
            pass
        finally:
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
    finally:
        await consumer.stop()
        await producer.stop()
    accepted_before = sum(k[0] == "accepted" for k in known_before.values())
    if pending and lookup_database and settings.database_url:
        try:
            async with db_pool(settings) as pool:
                known = await pool.fetch(
                    "SELECT order_key FROM intake.orders WHERE channel = 'direct' AND order_key = ANY($1::text[])",
                    list(pending),
                )
        except Exception as exc:  # the database is a courtesy here: the topics are the source
            err.print(f"[yellow]could not look up earlier orders: {exc}[/yellow]")
            known = []
        for r in known:  # accepted, but the action makes no command (e.g. a refresh)
            late = pending.pop(r["order_key"], None)
            if late is not None:
                outcomes[late] = RowOutcome(late, r["order_key"], "accepted", where="database")
    for order_id, number in pending.items():
        outcomes[number] = RowOutcome(number, order_id, "no_outcome")
    seconds = time.perf_counter() - started
    ordered = [outcomes[n] for n in sorted(outcomes)]
    by_reason: Counter[str] = Counter()
    for o in ordered:
        if o.outcome == "rejected":
            for code in {str(r.get("code")) for r in o.reasons}:
                by_reason[code] += 1
    return BatchSummary(
        file=file_name,
        rows=len(rows),
        published=len(to_send),
        accepted=sum(o.outcome == "accepted" for o in ordered),
        rejected=sum(o.outcome == "rejected" for o in ordered),
        no_outcome=sum(o.outcome == "no_outcome" for o in ordered),
        by_reason=dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        rejected_locally=sum(o.where == "local" for o in ordered),
        accepted_before=accepted_before,
        rejected_before=sum(k[0] == "rejected" for k in known_before.values()),
        publish_seconds=round(publish_seconds, 3),
        seconds=round(seconds, 3),
        rows_per_second=round(len(rows) / seconds, 1) if seconds > 0 else 0.0,
        outcomes=ordered,
    )


@intake_app.command("batch")
def intake_batch(
    file: Annotated[Path, typer.Argument(help="Partner CSV file (columns in docs/intake.md §9).")],
    channel: Annotated[
        str,
        typer.Option(help="Channel whose plan ids the channel_plan_id column holds, for rows without source_channel."),
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
        summary = run(run_batch(settings, data, file_name=str(file), channel=name, timeout=timeout,
                                headers=headers))
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err) as bar:
            published = bar.add_task("published", total=None)
            settled = bar.add_task("outcomes ", total=None)
            summary = run(run_batch(
                settings, data, file_name=str(file), channel=name, timeout=timeout, headers=headers,
                on_published=lambda n, total: bar.update(published, completed=n, total=total),
                on_outcome=lambda n, total: bar.update(settled, completed=n, total=total),
            ))
        _print_summary(summary)
    if summary.no_outcome:
        raise typer.Exit(EXIT_FAILED)


def _print_summary(summary: BatchSummary) -> None:
    table = Table(show_header=False, title=f"batch {summary.file}")
    for label, value in (
        ("rows", summary.rows), ("published", summary.published), ("accepted", summary.accepted),
        ("  of them accepted in an earlier run", summary.accepted_before), ("rejected", summary.rejected),
        ("  of them rejected locally", summary.rejected_locally),
        ("  of them rejected in an earlier run", summary.rejected_before), ("no outcome", summary.no_outcome),
        ("seconds", summary.seconds), ("rows per second", summary.rows_per_second),
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
            detail.add_row(str(o.row_number), str(o.order_id or ""),
                           "; ".join(f"{r.get('code')} {r.get('field') or ''}".strip() for r in o.reasons))
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


@intake_app.command("poll-stackit")
def intake_poll_stackit(
    once: Annotated[bool, typer.Option("--once", help="Poll once and exit (default: poll until Ctrl-C).")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Poll the STACKIT vendor API: publish changed subscriptions, approve or reject pending ones.

    Needs SOM_STACKIT_BASE_URL, SOM_STACKIT_PROJECT_ID and SOM_STACKIT_TOKEN. The intake
    worker does the same in the background when SOM_STACKIT_BASE_URL is set.
    """
    settings = resolved_settings()
    if not settings.stackit_base_url or not settings.stackit_project_id:
        err.print("[red]error:[/red] set SOM_STACKIT_BASE_URL and SOM_STACKIT_PROJECT_ID (and SOM_STACKIT_TOKEN)")
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
                + (f", [red]{len(report['errors'])} error(s)[/red]: {'; '.join(report['errors'])}"
                   if report["errors"] else "")
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
