"""``som bench``: throughput and latency from inbound order to invoice, on the real worker set."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.messaging import topics
from shared.messaging.kafka_util import topic_partitions
from shared.messaging.offsets import end_offsets
from shared.settings import Settings
from som.cpu import ProcessCpu
from som.orders import direct_order, send_orders, subscription_id_of

BENCH_COUNTRIES = ("DE", "FR", "NL", "IE", "GB")


def interpreter() -> str:
    """This interpreter's version and executable (the workers are started with the same one)."""
    return f"{platform.python_version()} {os.path.realpath(sys.executable)}"


@dataclass
class BenchResult:
    """Figures of one run."""

    orders: int
    invoices: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    rate: float | None
    entitlements_p50_ms: float = float("nan")
    entitlements_p99_ms: float = float("nan")
    # Order to the lifecycle's change (intake and lifecycle): where a backlog sits.
    change_p50_ms: float = float("nan")
    change_p99_ms: float = float("nan")
    # Each hop alone, publish to publish: intake (order -> command), lifecycle (command -> change),
    # billing (change -> invoice).
    intake_p50_ms: float = float("nan")
    intake_p99_ms: float = float("nan")
    lifecycle_p50_ms: float = float("nan")
    lifecycle_p99_ms: float = float("nan")
    billing_p50_ms: float = float("nan")
    billing_p99_ms: float = float("nan")
    # CPU of each process of the set over the run, per order (``som.cpu``; empty where unknown).
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        figures: dict[str, object] = {
            k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.__dict__.items()
        }
        # The interpreter the workers ran on: its build changes their CPU per order by 12-25 %
        # (docs/deploy.md, "The image"), so figures of two machines compare only with it.
        figures["python"] = interpreter()
        return figures


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


# The records a bench reads, by what they mark in an order's path.
COMMAND, CHANGE, INVOICE, ENTITLEMENTS = "command", "change", "invoice", "entitlements"


def latency_figures(sent_at: dict[str, float], seen: dict[str, dict[str, float]]) -> dict[str, float]:
    """p50/p99 in milliseconds of each stretch of an order's path (and ``max_ms`` of order to invoice).

    ``sent_at``: when each subscription's order was published; ``seen``: per mark (``COMMAND``,
    ``CHANGE``, ``INVOICE``, ``ENTITLEMENTS``), when the first record of that subscription was
    published, in seconds of the same wall clock. A stretch counts the subscriptions that have
    both of its ends, so records read in any order across topics give the same figures.
    """
    stretches = {
        "": ("sent", INVOICE),
        "change_": ("sent", CHANGE),
        "entitlements_": (CHANGE, ENTITLEMENTS),
        "intake_": ("sent", COMMAND),
        "lifecycle_": (COMMAND, CHANGE),
        "billing_": (CHANGE, INVOICE),
    }
    marks = {"sent": sent_at, **seen}
    figures: dict[str, float] = {}
    for prefix, (start, stop) in stretches.items():
        begins, ends = marks.get(start, {}), marks.get(stop, {})
        values = sorted((ends[sub] - at) * 1000 for sub, at in begins.items() if sub in ends)
        figures[f"{prefix}p50_ms"] = _percentile(values, 0.50)
        figures[f"{prefix}p99_ms"] = _percentile(values, 0.99)
        if prefix == "":
            figures["max_ms"] = values[-1] if values else float("nan")
    return figures


async def _reader_from_now(bootstrap: str, names: list[str]) -> AIOKafkaConsumer:
    """A started group-less reader of ``names``, positioned at their true ends (only what comes next).

    Latencies are taken from the records' own timestamps (set when the worker published them), so
    the reader's fetch wait adds nothing to the figures and it can poll as lazily as a worker does
    (a 5 ms wait over every partition cost the broker about a sixth of a core during a run). The
    true end, because Tansu's "latest offset" stops short and older records would be counted.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=250)
    await consumer.start()
    tps: list[TopicPartition] = []
    for name in names:
        tps.extend(await topic_partitions(consumer, name))
    for tp, end in (await end_offsets(consumer, tps)).items():
        consumer.seek(tp, end)
    return consumer


async def run_bench(
    settings: Settings,
    orders: int,
    rate: float | None,
    *,
    timeout: float = 600.0,
    progress: Callable[[int, int], None] | None = None,
    cpu: ProcessCpu | None = None,
) -> BenchResult:
    """Publish ``orders`` direct orders (all at once, or ``rate`` per second) and time their invoices.

    ``cpu``: the set's processes, whose CPU over the run is reported per order.
    """
    assert settings.kafka_bootstrap
    ns = settings.topic_namespace
    marks = {
        f"{ns}{topics.SUBSCRIPTIONS_COMMANDS}": COMMAND,
        f"{ns}{topics.SUBSCRIPTIONS_EVENTS}": CHANGE,
        f"{ns}{topics.BILLING_INVOICES}": INVOICE,
        f"{ns}{topics.ENTITLEMENTS_CHANGED}": ENTITLEMENTS,
    }
    consumer = await _reader_from_now(settings.kafka_bootstrap, list(marks))

    # Web shop orders name the buyer's billing country (taxed by it), spread over the EU rates.
    docs = [
        direct_order(plan="pro", quantity=1 + i % 5, country=BENCH_COUNTRIES[i % len(BENCH_COUNTRIES)])
        for i in range(orders)
    ]
    sent_at: dict[str, float] = {}
    seen: dict[str, dict[str, float]] = {mark: {} for mark in marks.values()}
    invoiced, entitled = seen[INVOICE], seen[ENTITLEMENTS]
    done = asyncio.Event()

    async def collect() -> None:
        # Entitlement figures may trail the invoices a little; they are never worth waiting long for.
        invoices_done_at: float | None = None
        while len(invoiced) < orders or (
            len(entitled) < orders
            and invoices_done_at is not None
            and time.perf_counter() - invoices_done_at < 5.0
        ):
            batch = await consumer.getmany(timeout_ms=500)
            for tp, recs in batch.items():
                first = seen[marks[tp.topic]]
                for r in recs:
                    # Records are keyed by their subject (the subscription): the key spares the bench
                    # parsing every value (invoices run to kilobytes) on the two cores it measures.
                    sub = r.key.decode() if r.key is not None else json.loads(r.value).get("subject")
                    if sub in sent_at:  # (not the warm-up's or another run's records)
                        first.setdefault(sub, r.timestamp / 1000)  # when the worker's relay sent it
            if progress:
                progress(len(invoiced), orders)
            if invoices_done_at is None and len(invoiced) >= orders:
                invoices_done_at = time.perf_counter()
        done.set()

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    collector = asyncio.create_task(collect())
    # Wall-clock seconds, comparable with the records' timestamps (same machine, same clock).
    t0 = time.time()
    cpu_before = cpu.sample() if cpu else {}
    try:
        if rate:
            interval = 1.0 / rate
            for i, doc in enumerate(docs):
                target = t0 + i * interval  # fixed schedule: no coordinated omission
                delay = target - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent_at[subscription_id_of(doc)] = target if delay > 0 else time.time()
                await send_orders(producer, settings.topic_namespace, [doc], wait=False)
        else:
            for doc in docs:
                sent_at[subscription_id_of(doc)] = time.time()
            await send_orders(producer, settings.topic_namespace, docs)
        async with asyncio.timeout(timeout):
            await done.wait()
    except TimeoutError:
        pass
    finally:
        collector.cancel()
        await producer.stop()
        await consumer.stop()
    used = cpu.per_order(cpu_before, cpu.sample(), len(invoiced)) if cpu else {}
    # Throughput ends when the last invoice was published.
    elapsed = (max(invoiced.values()) if invoiced else time.time()) - t0
    return BenchResult(
        orders=orders,
        invoices=len(invoiced),  # (only this run's subscriptions are recorded)
        seconds=elapsed,
        per_second=len(invoiced) / elapsed if elapsed else 0.0,
        rate=rate,
        cpu_ms_per_order=used,
        **latency_figures(sent_at, seen),
    )


def default_baseline_script() -> Path:
    """``../shared/bench/baseline_pipeline.py`` next to the repository root (found walking up from here)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists():
            return parent.parent / "shared" / "bench" / "baseline_pipeline.py"
    return here.parent.parent.parent / "shared" / "bench" / "baseline_pipeline.py"


async def run_baseline(script: Path, bootstrap: str, dsn: str, orders: int) -> dict[str, Any]:
    """Run the baseline pipeline against the same broker and database; its JSON figures."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        bootstrap,
        dsn,
        str(orders),
        "0",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, errs = await proc.communicate()
    lines = [line for line in out.decode().splitlines() if line.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"baseline failed (exit {proc.returncode}): {errs.decode()[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def tracing_env(tracing: bool | None, ratio: float | None = None) -> dict[str, str]:
    """Worker environment for the standard OpenTelemetry sampler variables.

    ``None``: as configured (the workers record nothing without an exporter); ``True``: record
    every trace (its cost is what ``--tracing`` measures); ``False``: record none.
    """
    if tracing is False:
        return {"OTEL_TRACES_SAMPLER": "always_off"}
    if ratio is not None:
        return {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(ratio)}
    if tracing:
        return {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
    return {}


@dataclass
class RenewalResult:
    """Figures of one renewal run."""

    subscriptions: int
    setup_seconds: float
    renewal_invoices: int
    renewal_seconds: float
    renewal_invoices_per_second: float
    seconds_until_quiet: float

    def as_dict(self) -> dict[str, object]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


async def run_renewals(
    settings: Settings,
    subscriptions: int,
    *,
    timeout: float = 3600.0,
    progress: Callable[[str], None] | None = None,
) -> RenewalResult:
    """Create ``subscriptions`` monthly subscriptions on a test clock, then move it across one renewal.

    The clock first moves to just before the renewal date (upcoming-charge notices and month-end
    journal entries fire there), then across it; the renewal window is timed from that second
    move to the last renewal invoice, and until the whole system is quiet again.
    """
    import uuid
    from datetime import UTC, datetime, timedelta

    from shared.db.pool import create_pool
    from shared.timekeeping import advance_clock, create_clock

    assert settings.kafka_bootstrap and settings.database_url
    say = progress or (lambda _m: None)
    ns = settings.topic_namespace
    clock = f"renewals-{uuid.uuid4().hex[:8]}"
    start = datetime(2025, 1, 10, tzinfo=UTC)
    renewal = datetime(2025, 2, 10, tzinfo=UTC)
    invoice_topic = f"{ns}{topics.BILLING_INVOICES}"
    consumer = await _reader_from_now(settings.kafka_bootstrap, [invoice_topic])
    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        await create_clock(pool, clock, start)
        docs = [
            direct_order(
                plan="pro",
                quantity=1 + i % 3,
                effective_at=start,
                country=BENCH_COUNTRIES[i % len(BENCH_COUNTRIES)],
            )
            for i in range(subscriptions)
        ]
        wanted = {subscription_id_of(d) for d in docs}
        first: set[str] = set()
        renewed: set[str] = set()
        last_renewal_at = 0.0

        async def read(until: Callable[[], bool], limit: float) -> None:
            nonlocal last_renewal_at
            deadline = time.monotonic() + limit
            while not until():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(first)} first and {len(renewed)} renewal invoices seen")
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                for recs in batch.values():
                    for r in recs:
                        doc = json.loads(r.value)
                        sub, data = doc.get("subject"), doc.get("data", {})
                        if sub not in wanted or data.get("document_type") != "invoice":
                            continue
                        if sub in first:
                            renewed.add(sub)
                            last_renewal_at = max(last_renewal_at, r.timestamp / 1000)
                        else:
                            first.add(sub)

        t0 = time.perf_counter()
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            await send_orders(producer, ns, docs, headers={"som-test-clock": clock})
        finally:
            await producer.stop()
        say(f"{subscriptions} orders published on clock {clock}")
        await read(lambda: len(first) >= subscriptions, timeout)
        setup = time.perf_counter() - t0
        say(f"{subscriptions} subscriptions invoiced in {setup:.1f}s; moving to the eve of the renewal")
        await advance_clock(
            pool, settings.kafka_bootstrap, ns, clock, renewal - timedelta(seconds=1), timeout=timeout
        )
        say("renewal date: advancing across it")
        t1 = time.perf_counter()
        t1_wall = time.time()  # renewals are timed by their records' timestamps (wall clock)
        mover = asyncio.create_task(
            advance_clock(
                pool, settings.kafka_bootstrap, ns, clock, renewal + timedelta(hours=1), timeout=timeout
            )
        )
        await read(lambda: len(renewed) >= subscriptions, timeout)
        await mover
        quiet_after = time.perf_counter() - t1
    finally:
        await consumer.stop()
        await pool.close()
    window = max(last_renewal_at - t1_wall, 1e-9)
    return RenewalResult(
        subscriptions=subscriptions,
        setup_seconds=setup,
        renewal_invoices=len(renewed),
        renewal_seconds=window,
        renewal_invoices_per_second=len(renewed) / window,
        seconds_until_quiet=quiet_after,
    )


def free_port_base(count: int) -> int:
    """A port with ``count`` free ports from it (the workers' HTTP servers: base + their index).

    Drawn below Linux's ephemeral range (32768 up): a port the kernel hands out for outgoing
    connections (thousands a minute to the broker and database) can be taken between this check
    and the servers' bind, which is how a parallel test's connection once stole a health port.
    """
    import random
    import socket

    for _ in range(50):
        base = random.randrange(20_000, 32_700 - count)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise RuntimeError("no free port range")


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def run_entitlement_checks(
    settings: Settings, port: int, checks: int, rate: float, *, timeout: float = 60.0
) -> dict[str, Any]:
    """Place one order, wait until the entitlements worker's check API knows its customer, then send
    ``checks`` GETs at ``rate`` per second (alternating the set and one feature) and time each."""
    order = direct_order(plan="pro", quantity=2, customer_id=f"cus-bench-{time.time_ns()}")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await send_orders(producer, settings.topic_namespace, [order])
    finally:
        await producer.stop()
    from shared.contracts.envelope import derived_id

    customer = derived_id("customer", "direct", order["customer"]["id"])  # intake's internal customer id
    paths = [f"/v1/customers/{customer}/entitlements", f"/v1/customers/{customer}/entitlements/sso"]
    deadline = time.monotonic() + timeout
    while (await _get(port, paths[0]))[0] != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the check API never knew the bench customer")
        await asyncio.sleep(0.1)
    latencies: list[float] = []
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        started = time.perf_counter()
        status, _ = await _get(port, paths[i % 2])
        latencies.append((time.perf_counter() - started) * 1000)
        failures += status != 200

    began = time.perf_counter()
    tasks = []
    for i in range(checks):
        # A fixed schedule (open loop): a slow answer does not slow the arrivals down.
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    lat = sorted(latencies)
    return {
        "checks": checks,
        "target_rate": rate,
        "achieved_rate": round(checks / elapsed, 1),
        "failures": failures,
        "p50_ms": round(_percentile(lat, 0.50), 3),
        "p99_ms": round(_percentile(lat, 0.99), 3),
        "max_ms": round(lat[-1], 3) if lat else float("nan"),
    }
