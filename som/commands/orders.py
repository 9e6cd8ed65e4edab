"""``som orders``: publish orders in the direct channel format."""

from __future__ import annotations

from typing import Annotated

import typer

from som.common import console, resolved_settings, run

app = typer.Typer(help="Publish orders in the direct channel format.", no_args_is_help=True)


@app.command("send")
def orders_send(
    plan: Annotated[str, typer.Option(help="Catalog plan id.")] = "pro",
    quantity: Annotated[int, typer.Option(min=1)] = 1,
    billing_interval: Annotated[str, typer.Option(help="P1M, P3M or P1Y.")] = "P1M",
    currency: Annotated[str, typer.Option()] = "USD",
    count: Annotated[int, typer.Option(min=1, help="How many orders.")] = 1,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Publish direct orders to orders.inbound.direct."""
    from aiokafka import AIOKafkaProducer

    from som.orders import direct_order, send_orders, subscription_id_of

    settings = resolved_settings()
    docs = [
        direct_order(plan=plan, quantity=quantity, billing_interval=billing_interval, currency=currency)
        for _ in range(count)
    ]

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await send_orders(producer, settings.topic_namespace, docs)
        finally:
            await producer.stop()

    run(go())
    out = [{"order_id": d["order_id"], "subscription_id": subscription_id_of(d)} for d in docs]
    if as_json:
        console.print_json(data=out)
    else:
        for o in out:
            console.print(f"sent order {o['order_id']} -> subscription {o['subscription_id']}")
