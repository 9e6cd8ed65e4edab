"""``som up --demo``: feed a small stream of sample orders and show what they turn into."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console

from shared.messaging import topics
from shared.settings import Settings
from som.orders import direct_order, send_orders

_SAMPLES: list[dict[str, Any]] = [
    {"plan": "starter", "quantity": 1, "currency": "USD", "billing_interval": "P1M"},
    {"plan": "pro", "quantity": 5, "currency": "USD", "billing_interval": "P1M"},
    {"plan": "pro", "quantity": 2, "currency": "EUR", "billing_interval": "P1M"},
    {"plan": "enterprise", "quantity": 25, "currency": "USD", "billing_interval": "P1Y"},
    {"plan": "starter", "quantity": 1, "currency": "JPY", "billing_interval": "P1M"},
    {"plan": "unknown-plan", "quantity": 1, "currency": "USD", "billing_interval": "P1M"},  # rejected
]


async def run_demo(settings: Settings, rate: float, stop: threading.Event, console: Console) -> None:
    """Publish sample orders at ``rate`` per second and print invoices, entitlements and rejections."""
    ns = settings.topic_namespace
    watched = {
        f"{ns}{topics.BILLING_INVOICES}": "invoice",
        f"{ns}{topics.ENTITLEMENTS_CHANGED}": "entitlements",
        f"{ns}{topics.ORDERS_REJECTED}": "rejected",
    }
    consumer = AIOKafkaConsumer(
        *watched,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        group_id=f"{ns}som.demo-viewer",
        enable_auto_commit=True,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        samples = itertools.cycle(_SAMPLES)

        async def feed() -> None:
            while not stop.is_set():
                order = direct_order(**next(samples))
                await send_orders(producer, ns, [order])
                console.print(
                    f"[cyan]order[/cyan]     {order['order_id']} {order['plan']} x{order['quantity']} "
                    f"{order['currency']} {order['billing_interval']}"
                )
                await asyncio.sleep(1.0 / rate)

        feeder = asyncio.create_task(feed())
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                for r in recs:
                    _show(console, watched[r.topic], json.loads(r.value))
        feeder.cancel()
    finally:
        await producer.stop()
        await consumer.stop()


def _show(console: Console, kind: str, event: dict[str, object]) -> None:
    data = event.get("data", {})
    assert isinstance(data, dict)
    if kind == "invoice":
        console.print(
            f"[green]invoice[/green]   {data['document_number']} {data['total']} {data['currency']} "
            f"for {str(data['subscription_id'])[:8]}... due {data['due_date']}"
        )
    elif kind == "entitlements":
        console.print(
            f"[magenta]entitled[/magenta]  {str(data['subscription_id'])[:8]}... v{data['version']} "
            f"{data['status']}: {', '.join(data['features'])}"
        )
    else:
        codes = ", ".join(str(r["code"]) for r in data.get("reasons", []))
        console.print(f"[red]rejected[/red]  {data.get('channel')} order: {codes}")
