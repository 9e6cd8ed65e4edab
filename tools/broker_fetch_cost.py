"""What a fetch costs the embedded broker as a partition fills, by how its records were batched.

Tansu's in-memory store (``memory://``, what ``som up`` and ``som bench`` start) finds a fetch's
offset by going through the record batches stored for the partition, so a fetch costs the broker
time in proportion to how many batches the partition holds, not to what it returns. A log written
one record per produce request (a channel sending orders one by one, a relay publishing a claim of
one or two rows) holds one batch per record; a burst, or a relay claim of hundreds of rows, packs
many records into each.

This starts its own broker, fills one single-partition topic in steps, and after each step times
``--fetches`` fetches of one record near the end (the broker's CPU from ``/proc``), for a log
written one record per batch and for one written up to ``--batched`` records per batch. It prints
the broker's milliseconds of CPU per fetch against the batches stored. Measured December 8, 2026
on a 2-core machine: 0.15 ms with one batch stored, then 2.15 / 4.9 / 6.65 / 11.1 ms with 3,001 /
6,001 / 9,001 / 12,001 single-record batches, against 0.3-0.35 ms for the same records in 41-161
batches. Under ``som bench --rate 200`` every order reaches the broker as a batch of its own, and
each relay claim of a few rows as one batch per partition, so the broker's CPU per order grows
through a run (1.8-2.2 ms per order paced at 200/s against 0.4-0.6 in a burst).

    .venv/bin/python tools/broker_fetch_cost.py [--steps 4] [--step-records 3000] [--json]

A measurement, not a test. On Apache Kafka a fetch finds its offset through the segment's offset
index, whatever the log holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from som.embedded import EmbeddedBroker


def _cpu_ms(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system) * 1000


async def _append(producer: AIOKafkaProducer, topic: str, records: int, per_batch: int) -> int:
    """Append ``records`` records, up to ``per_batch`` to a produce request; returns the batches written."""
    batches = 0

    async def send(batch: Any) -> None:
        nonlocal batches
        batch.close()
        await (await producer.send_batch(batch, topic, partition=0))
        batches += 1

    batch, held = producer.create_batch(), 0
    for i in range(records):
        record = {"key": str(i).encode(), "value": b"x" * 200, "timestamp": None}
        if held == per_batch or batch.append(**record) is None:  # full: send it, start the next
            await send(batch)
            batch, held = producer.create_batch(), 0
            batch.append(**record)
        held += 1
    if held:
        await send(batch)
    return batches


async def _fetch_cost(bootstrap: str, topic: str, end: int, fetches: int, broker: psutil.Process) -> float:
    """Broker CPU (ms) per fetch of the record at ``end - 1``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    try:
        before = _cpu_ms(broker)
        for _ in range(fetches):
            consumer.seek(tp, end - 1)  # a seek drops what the consumer buffered: the next call fetches
            got = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
            assert got.get(tp), f"the record at {end - 1} was not returned"
        return (_cpu_ms(broker) - before) / fetches
    finally:
        await consumer.stop()


async def measure(steps: int, step_records: int, batched: int, fetches: int) -> list[dict[str, Any]]:
    """Rows of (layout, records, batches stored, broker ms per fetch)."""
    rows: list[dict[str, Any]] = []
    for layout, per_batch in (("one record a batch", 1), (f"up to {batched} records a batch", batched)):
        broker = EmbeddedBroker()
        broker.start()
        try:
            assert broker.process is not None
            process = psutil.Process(broker.process.pid)
            admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
            await admin.start()
            await admin.create_topics([NewTopic("fetch-cost", 1, 1)])
            await admin.close()
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
            await producer.start()
            try:
                records = batches = 0
                for _ in range(steps + 1):
                    if records == 0:
                        batches += await _append(producer, "fetch-cost", 1, 1)
                        records = 1
                    cost = await _fetch_cost(broker.bootstrap, "fetch-cost", records, fetches, process)
                    rows.append(
                        {
                            "layout": layout,
                            "records": records,
                            "batches": batches,
                            "broker_ms_per_fetch": round(cost, 3),
                        }
                    )
                    batches += await _append(producer, "fetch-cost", step_records, per_batch)
                    records += step_records
            finally:
                await producer.stop()
        finally:
            broker.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="how many times the log grows")
    parser.add_argument("--step-records", type=int, default=3000, help="records appended per step")
    parser.add_argument("--batched", type=int, default=100, help="records per batch of the packed log")
    parser.add_argument("--fetches", type=int, default=200, help="fetches timed per step")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = asyncio.run(measure(args.steps, args.step_records, args.batched, args.fetches))
    if args.json:
        print(json.dumps({"rows": rows, "seconds": round(time.perf_counter() - started, 1)}))
        return
    print(f"{'layout':<22} {'records':>8} {'batches':>8} {'broker ms/fetch':>16}")
    for r in rows:
        print(f"{r['layout']:<22} {r['records']:>8} {r['batches']:>8} {r['broker_ms_per_fetch']:>16}")


if __name__ == "__main__":
    main()
