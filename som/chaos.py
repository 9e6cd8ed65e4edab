"""``som chaos``: orders under worker kills and database crashes, then proof nothing was lost or doubled.

It runs the worker set as processes (optionally two per worker, one consumer group), publishes
valid direct orders plus exact duplicate deliveries, unknown-plan orders and unparseable bytes,
SIGKILLs random workers at seeded random times and restarts them, and stops PostgreSQL hard and
restarts it on the same data directory. Then it checks, from the topics (read from the start to
their true end) and from the database, that every valid order has exactly one subscription, one
invoice and an entitlement set, invoice numbers are gapless, and rejections and dead letters are
exactly the injected ones.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from rich.table import Table

from services.billing import views as billing_views
from services.lifecycle import views as lifecycle_views
from services.registry import WORKERS
from shared.db.pool import create_pool
from shared.messaging import topics
from shared.messaging.kafka_util import topic_partitions
from shared.messaging.offsets import read_to_end
from shared.settings import Settings, get_settings
from shared.timekeeping import SYSTEM_CLOCK, wait_quiet
from som.embedded import EmbeddedBroker, EmbeddedPostgres
from som.orders import direct_order, subscription_id_of
from som.runner import WorkerSet, child_env, prepare, terminate_on_signals


@dataclass
class ChaosPlan:
    """What to inject; everything random comes from ``seed``."""

    orders: int
    rate: float | None = None
    kills: int = 2
    db_restarts: int = 1
    db_down_seconds: float = 3.0
    replicas: int = 1
    seed: int = 1
    duplicate_share: float = 0.1
    unknown_plan_share: float = 0.05
    garbage_share: float = 0.02


@dataclass
class ChaosReport:
    """What was injected, what happened, and whether every check passed."""

    orders: int
    duplicates_sent: int
    unknown_plan_sent: int
    garbage_sent: int
    kills: list[str] = field(default_factory=list)
    db_restarts: int = 0
    subscriptions: int = 0
    invoiced: int = 0
    entitled: int = 0
    lost: int = 0
    duplicate_effects: int = 0
    invoice_number_gaps: int = 0
    rejections_unknown_plan: int = 0
    unexpected_rejections: int = 0
    dead_letters_intake: int = 0
    unexpected_dead_letters: int = 0
    redelivered_copies: int = 0
    redelivered_dead_letter_copies: int = 0
    settle_error: str | None = None
    seconds: float = 0.0

    @property
    def checks(self) -> dict[str, bool]:
        """Each check by name: True when it holds."""
        return {
            "lost = 0": self.lost == 0,
            "duplicate effects = 0": self.duplicate_effects == 0,
            "invoice numbers gapless": self.invoice_number_gaps == 0,
            "rejections as injected": self.rejections_unknown_plan == self.unknown_plan_sent
            and self.unexpected_rejections == 0,
            "dead letters as injected": self.dead_letters_intake == self.garbage_sent
            and self.unexpected_dead_letters == 0,
            "system settled": self.settle_error is None,
        }

    @property
    def passed(self) -> bool:
        """All checks hold."""
        return all(self.checks.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures plus the checks."""
        out: dict[str, Any] = {k: v for k, v in self.__dict__.items()}
        out["seconds"] = round(self.seconds, 2)
        out["checks"] = self.checks
        out["passed"] = self.passed
        return out


def _events(records: list[ConsumerRecord]) -> tuple[list[dict[str, Any]], int]:
    """Decoded CloudEvents, one per event id, and how many copies were redelivered."""
    seen: dict[str, dict[str, Any]] = {}
    copies = 0
    for r in records:
        try:
            doc = json.loads(r.value)
        except (ValueError, TypeError):
            continue
        if doc.get("id") in seen:
            copies += 1
            continue
        seen[doc.get("id", f"{r.topic}/{r.partition}/{r.offset}")] = doc
    return list(seen.values()), copies


async def read_topics(bootstrap: str, names: list[str]) -> dict[str, list[ConsumerRecord]]:
    """Every record of ``names`` from the start to the true end, per topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: dict[str, list[ConsumerRecord]] = {n: [] for n in names}
    try:
        tps = [tp for n in names for tp in await topic_partitions(consumer, n, refreshes=1, pause=0)]
        if tps:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            await read_to_end(consumer, tps, lambda r: out[r.topic].append(r))
    finally:
        await consumer.stop()
    return out


async def _wait_ready(s: Settings, timeout: float = 120.0) -> None:
    from som.bench import run_bench

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await run_bench(s, 1, None, timeout=5.0)).invoices == 1:
            return
    raise RuntimeError("workers did not become ready")


async def run_chaos(
    s: Settings,
    plan: ChaosPlan,
    workers: WorkerSet,
    pg: EmbeddedPostgres | None,
    *,
    say: Callable[[str], None] = lambda _m: None,
    settle_timeout: float = 300.0,
) -> ChaosReport:
    """Inject the plan's traffic and faults into a running worker set, then verify (see module doc)."""
    assert s.kafka_bootstrap and s.database_url
    rng = random.Random(plan.seed)
    ns = s.topic_namespace
    run_id = uuid.uuid4().hex[:6]
    valid = [
        direct_order(plan="pro", quantity=1 + i % 5, order_id=f"ord-{run_id}-{i:06d}")
        for i in range(plan.orders)
    ]
    unknown = [
        direct_order(plan="no-such-plan", order_id=f"ord-{run_id}-u{i:05d}")
        for i in range(max(1, round(plan.orders * plan.unknown_plan_share)))
    ]
    garbage = [
        f"{{not json {run_id} {i}".encode() for i in range(max(1, round(plan.orders * plan.garbage_share)))
    ]
    dup_idx = rng.sample(range(plan.orders), k=max(1, round(plan.orders * plan.duplicate_share)))
    traffic: list[tuple[bytes, bytes]] = [
        (json.dumps(o).encode(), o["order_id"].encode()) for o in valid + unknown
    ]
    traffic += [(g, f"garbage-{i}".encode()) for i, g in enumerate(garbage)]
    rng.shuffle(traffic)
    # Exact duplicates: the same bytes again, later in the stream.
    by_id = {o["order_id"]: json.dumps(o).encode() for o in valid}
    for i in dup_idx:
        oid = valid[i]["order_id"]
        traffic.insert(rng.randrange(len(traffic) + 1), (by_id[oid], oid.encode()))
    report = ChaosReport(
        orders=plan.orders,
        duplicates_sent=len(dup_idx),
        unknown_plan_sent=len(unknown),
        garbage_sent=len(garbage),
    )

    duration = len(traffic) / plan.rate if plan.rate else max(5.0, len(traffic) / 200)
    keys = sorted(workers.processes)
    faults: list[tuple[float, str, str]] = [
        (rng.uniform(0.1, 0.9) * duration, "kill", rng.choice(keys)) for _ in range(plan.kills)
    ]
    if plan.db_restarts and pg is None:
        raise ValueError("database restarts need the embedded database (unset SOM_DATABASE_URL)")
    faults += [(rng.uniform(0.1, 0.8) * duration, "db", "") for _ in range(plan.db_restarts)]
    faults.sort()

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            topic = f"{ns}{topics.inbound('direct')}"
            t0 = time.perf_counter()
            pending = []
            for i, (value, key) in enumerate(traffic):
                delay = t0 + i * duration / len(traffic) - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(await producer.send(topic, value=value, key=key))
            for f in pending:
                await f
        finally:
            await producer.stop()

    async def inject() -> None:
        t0 = time.perf_counter()
        for at, kind, target in faults:
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if kind == "kill":
                say(f"SIGKILL {target}")
                workers.kill(target)
                report.kills.append(target)
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                workers.start_one(target)
            else:
                assert pg is not None
                say(f"PostgreSQL: immediate stop for {plan.db_down_seconds}s")
                await asyncio.to_thread(pg.crash)
                await asyncio.sleep(plan.db_down_seconds)
                await asyncio.to_thread(pg.restart)
                report.db_restarts += 1
                say("PostgreSQL: back")

    started = time.perf_counter()
    await asyncio.gather(publish(), inject())
    say("traffic and faults done; waiting until the system is quiet")
    pool = await create_pool(s.database_url, min_size=1, max_size=4)
    try:
        try:
            await wait_quiet(pool, s.kafka_bootstrap, ns, SYSTEM_CLOCK, timeout=settle_timeout, poll=0.5)
        except TimeoutError as exc:
            report.settle_error = str(exc)
        report.seconds = time.perf_counter() - started
        await _verify(s, pool, report, valid, unknown)
    finally:
        await pool.close()
    return report


async def _verify(
    s: Settings, pool: Any, report: ChaosReport, valid: list[dict[str, Any]], unknown: list[dict[str, Any]]
) -> None:
    ns = s.topic_namespace
    assert s.kafka_bootstrap
    from som.dlq import dlq_topics, read_dead_letters

    dlqs = await dlq_topics(s.kafka_bootstrap, ns)
    names = [
        f"{ns}{topics.BILLING_INVOICES}",
        f"{ns}{topics.ENTITLEMENTS_CHANGED}",
        f"{ns}{topics.ORDERS_REJECTED}",
    ]
    data = await read_topics(s.kafka_bootstrap, names)
    invoices, c1 = _events(data[names[0]])
    entitlements, c2 = _events(data[names[1]])
    rejections, c3 = _events(data[names[2]])
    report.redelivered_copies = c1 + c2 + c3

    expected = {subscription_id_of(o) for o in valid}
    invoice_numbers: dict[str, set[str]] = {}
    for e in invoices:
        d = e.get("data", {})
        if d.get("document_type") == "invoice":
            invoice_numbers.setdefault(e.get("subject", ""), set()).add(d.get("document_number"))
    entitled = {e.get("subject") for e in entitlements}

    have_sub = Counter(await lifecycle_views.existing_subscriptions(pool, sorted(expected)))
    db_invoices = await billing_views.invoice_counts(pool, sorted(expected))
    report.subscriptions = len(have_sub)
    report.invoiced = sum(1 for sub in expected if invoice_numbers.get(sub))
    report.entitled = len(expected & entitled)
    report.lost = sum(
        1 for sub in expected if not (have_sub.get(sub) and invoice_numbers.get(sub) and sub in entitled)
    )
    report.duplicate_effects = sum(
        1
        for sub in expected
        if have_sub.get(sub, 0) > 1 or len(invoice_numbers.get(sub, ())) > 1 or db_invoices.get(sub, 0) > 1
    )
    numbers = sorted(int(n.split("-")[-1]) for n in await billing_views.invoice_numbers(pool))
    report.invoice_number_gaps = (numbers[-1] - len(numbers)) if numbers else 0

    unknown_ids = {o["order_id"] for o in unknown}
    for e in rejections:
        d = e.get("data", {})
        ids = {d.get("channel_subscription_id"), d.get("channel_event_id")}
        codes = {r.get("code") for r in d.get("reasons", [])}
        if ids & unknown_ids and "UNKNOWN_PLAN" in codes:
            report.rejections_unknown_plan += 1
        else:
            report.unexpected_rejections += 1
    intake_dlq = topics.dlq_topic(f"{ns}{topics.inbound('direct')}", s.group("intake"))
    # One dead letter per failed message: a second copy of one (a worker killed between its DLQ
    # send and its offset commit dead-letters it again) is counted as redelivered, not as another.
    for letter in await read_dead_letters(s.kafka_bootstrap, dlqs, None):
        if letter.copy_of is not None:
            report.redelivered_dead_letter_copies += 1
        elif letter.dlq_topic == intake_dlq and letter.value.startswith(b"{not json"):
            report.dead_letters_intake += 1
        else:
            report.unexpected_dead_letters += 1


def _chaos_settings(base: Settings) -> Settings:
    return base.model_copy(
        update={
            "topic_namespace": f"chaos{uuid.uuid4().hex[:8]}.",
            "health_port_base": 0,
            "health_port": None,
            "log_level": "WARNING",
            "consumer_session_timeout_ms": 6_000,
            "consumer_heartbeat_ms": 1_000,
            "scheduler_poll_seconds": 0.1,
        }
    )


def chaos_run(plan: ChaosPlan, base: Settings, say: Callable[[str], None]) -> ChaosReport:
    """Start broker and database (embedded unless configured) and the workers; run the plan; stop all."""
    data_dir = Path(tempfile.mkdtemp(prefix="som-chaos-"))
    broker = EmbeddedBroker() if not base.kafka_bootstrap else None
    pg = EmbeddedPostgres(data_dir / "pgdata", ephemeral=True) if not base.database_url else None
    ws: WorkerSet | None = None
    try:
        if broker:
            broker.start()
        dsn = pg.start() if pg else base.database_url
        s = _chaos_settings(base).model_copy(
            update={
                "kafka_bootstrap": broker.bootstrap if broker else base.kafka_bootstrap,
                "database_url": dsn,
            }
        )
        asyncio.run(prepare(s))
        ws = WorkerSet(child_env(s))
        ws.start(WORKERS, replicas=plan.replicas)
        say(f"{len(ws.processes)} worker processes started; waiting until ready")
        asyncio.run(_wait_ready(s))
        return asyncio.run(run_chaos(s, plan, ws, pg, say=say))
    finally:
        if ws:
            ws.stop()
        if broker:
            broker.stop()
        if pg:
            pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def chaos(
    orders: Annotated[int, typer.Option(min=1, help="Valid direct orders.")] = 300,
    rate: Annotated[
        float | None, typer.Option(help="Messages per second; default spread over a few seconds.")
    ] = None,
    kills: Annotated[int, typer.Option(min=0, help="Random worker SIGKILLs (each restarted).")] = 2,
    db_restarts: Annotated[int, typer.Option(min=0, help="Hard PostgreSQL stops (embedded only).")] = 1,
    db_down_seconds: Annotated[float, typer.Option(min=0, help="How long PostgreSQL stays down.")] = 3.0,
    replicas: Annotated[int, typer.Option(min=1, max=4, help="Processes per worker (same group).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Kill workers and the database under load; verify nothing lost, nothing doubled. Exit 1 on failure."""
    from som.common import console, err

    plan = ChaosPlan(orders, rate, kills, db_restarts, db_down_seconds, replicas, seed)
    say: Callable[[str], None] = (lambda _m: None) if as_json else (lambda m: err.print(f"[dim]{m}[/dim]"))
    with terminate_on_signals():
        report = chaos_run(plan, get_settings(), say)
    if as_json:
        print(json.dumps(report.as_dict(), default=str))
    else:
        table = Table("figure", "value", title="chaos")
        for k, v in report.as_dict().items():
            if k != "checks":
                table.add_row(k, str(v))
        for name, ok in report.checks.items():
            table.add_row(f"check: {name}", "[green]pass[/green]" if ok else "[red]FAIL[/red]")
        console.print(table)
    if not report.passed:
        raise typer.Exit(1)
