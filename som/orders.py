"""Building and publishing orders in the project's own ``direct`` channel format."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.contracts.envelope import derived_id
from shared.messaging import topics


def direct_order(
    *,
    plan: str = "pro",
    quantity: int = 1,
    billing_interval: str = "P1M",
    currency: str = "USD",
    effective_at: datetime | None = None,
    order_id: str | None = None,
    customer_id: str | None = None,
    region: str = "eu",
    country: str | None = None,
) -> dict[str, Any]:
    """A ``direct`` order document (the format documented in the README)."""
    oid = order_id or f"ord-{uuid.uuid4().hex[:12]}"
    cid = customer_id or f"cus-{uuid.uuid4().hex[:8]}"
    when = (effective_at or datetime.now(UTC)).astimezone(UTC)
    return {
        "order_id": oid,
        "customer": {
            "id": cid,
            "email": f"{cid}@customer.example",
            "name": f"Customer {cid}",
            "region": region,
            **({"country": country} if country else {}),
        },
        "plan": plan,
        "quantity": quantity,
        "billing_interval": billing_interval,
        "currency": currency,
        "effective_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def subscription_id_of(order: dict[str, Any]) -> str:
    """The internal subscription id intake derives for a new direct order."""
    return derived_id("subscription", "direct", str(order.get("subscription_id") or order["order_id"]))


async def send_orders(
    producer: AIOKafkaProducer,
    namespace: str,
    orders: list[dict[str, Any]],
    *,
    wait: bool = True,
    headers: dict[str, str] | None = None,
) -> None:
    """Publish direct orders keyed by their order id (``headers`` on each, e.g. a test clock)."""
    record_headers = [(k, v.encode()) for k, v in (headers or {}).items()]
    futures = [
        await producer.send(
            f"{namespace}{topics.inbound('direct')}",
            value=json.dumps(o).encode(),
            key=str(o["order_id"]).encode(),
            headers=record_headers,
        )
        for o in orders
    ]
    if wait:
        for f in futures:
            await f
