"""Replenishment subscriptions through the real lifecycle and billing workers (issue 11, item 10).

A catalog with a coffee-beans plan delivered every 4 weeks, priced by a price list fed by
``pricing.updated`` with a 10 % cap per cycle, stock 3, partial delivery on short stock. Two
customers: A orders 2 bags (in stock), B orders 5 (3 in stock). A delays a delivery, then skips
one; a duplicate of the delay changes nothing. Each cycle is one order on ``orders.replenishment``
and one invoice whose lines name their price basis; one run_cycle timer is pending per subscription.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.catalog import DEFAULT_CATALOG_PATH
from shared.contracts import events as ev
from shared.contracts.commands import DelayNextParams, SkipNextParams
from shared.contracts.envelope import derived_id, make_event
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from shared.timekeeping import advance_clock, create_clock
from som.runner import child_env
from tests.integration.helpers import TopicReader, publish, running_workers
from tests.integration.test_billing_dunning import command, eventually, fast

pytestmark = pytest.mark.integration

D = Decimal
WORKERS = ("lifecycle", "billing")
SKU = "BEAN-1KG"


def catalog_with_beans(folder: Path) -> Path:
    """The packaged catalog plus a replenishment plan (stock 3, price list, 10 % cap, partial)."""
    catalog = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
    catalog["plans"].append(
        {
            "id": "beans-test",
            "name": "Coffee beans 1 kg",
            "product": "coffee",
            "stock": 3,
            "prices": [
                {
                    "currency": "USD",
                    "billing_interval": "P1M",
                    "unit_amount": "12.00",
                    "effective_from": "2024-01-01",
                }
            ],
            "replenishment": {
                "sku": SKU,
                "cadence": "P4W",
                "pricing": "price_list",
                "max_change_percent": "10",
                "shortage": "partial",
            },
        }
    )
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    return path


async def send(settings: Settings, topic: str, type_: str, subject: str, data: Any, command_id: str) -> None:
    corr = derived_id("test", command_id)
    event = make_event(
        type=type_, source="tests", subject=subject, data=data, correlation_id=corr, causation_id=corr
    )
    await publish(settings, topic, event.model_dump_json().encode(), key=subject, headers={"ce_id": event.id})


async def customer_command(settings: Settings, sub: str, params: Any, command_id: str) -> None:
    cmd = ev.ReplenishmentCommand(subscription_id=sub, command_id=command_id, params=params)
    await send(settings, topics.REPLENISHMENT_COMMANDS, ev.REPLENISHMENT_COMMAND, sub, cmd, command_id)


async def state_of(db: Database, sub: str) -> dict[str, Any]:
    value = await db.pool.fetchval("SELECT state FROM billing.replenishments WHERE subscription_id = $1", sub)
    return json.loads(value) if isinstance(value, str) else dict(value or {})


async def test_cycles_price_list_cap_partial_delivery_skip_and_delay(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    settings = fast(settings).model_copy(update={"catalog_path": catalog_with_beans(tmp_path)})
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    start = datetime(2025, 3, 1, 9, tzinfo=UTC)
    clock = f"{ns}beans"
    await create_clock(db.pool, clock, start)
    a, b = f"sub-ra-{uuid.uuid4().hex[:8]}", f"sub-rb-{uuid.uuid4().hex[:8]}"

    async with (
        running_workers(settings, db, names=WORKERS),
        TopicReader(bootstrap, f"{ns}{topics.ORDERS_REPLENISHMENT}") as orders,
        TopicReader(bootstrap, f"{ns}{topics.BILLING_INVOICES}") as invoices,
    ):
        await command(settings, "create", a, at=start, clock=clock, plan_id="beans-test", quantity=2)
        await command(settings, "create", b, at=start, clock=clock, plan_id="beans-test", quantity=5)

        async def first_cycles() -> bool:
            rows = await db.pool.fetchval(
                "SELECT count(*) FROM billing.documents WHERE subscription_id = ANY($1::text[])", [a, b]
            )
            return bool(rows == 2)

        await eventually(first_cycles, what="the first cycle of both subscriptions")
        # A list price of 15.00 from Mar 10; A delays its next delivery (Mar 29) by 3 days: Apr 1.
        update = ev.PricingUpdated(
            sku=SKU, currency="USD", unit_amount=D("15.00"), effective_at=datetime(2025, 3, 10, tzinfo=UTC)
        )
        await send(settings, topics.PRICING_UPDATED, ev.PRICING_UPDATED, SKU, update, "price-1")
        await customer_command(settings, a, DelayNextParams(days=3), f"{a}/delay-1")

        async def delayed() -> bool:
            return (await state_of(db, a)).get("next_due") == "2025-04-01"

        await eventually(delayed, what="the delay")
        # The same command again (a redelivery with a new event id): applied once only.
        cmd = ev.ReplenishmentCommand(
            subscription_id=a, command_id=f"{a}/delay-1", params=DelayNextParams(days=3)
        )
        await send(settings, topics.REPLENISHMENT_COMMANDS, ev.REPLENISHMENT_COMMAND, a, cmd, "redelivered")
        priced = await db.pool.fetchval("SELECT count(*) FROM billing.price_list WHERE sku = $1", SKU)
        assert priced >= 1

        await advance_clock(
            db.pool, bootstrap, ns, clock, datetime(2025, 4, 2, 9, tzinfo=UTC), services=WORKERS
        )

        async def second_cycles() -> bool:
            return (await state_of(db, a)).get("cycle") == 2 and (await state_of(db, b)).get("cycle") == 2

        await eventually(second_cycles, what="the second cycles")
        # B paused: its cycle timer goes; resumed the same day: it is back on B's due date (Apr 26).
        await command(settings, "pause", b, at=datetime(2025, 4, 2, 10, tzinfo=UTC))

        async def b_held() -> bool:
            return bool((await state_of(db, b)).get("held"))

        await eventually(b_held, what="B held")
        cycle_timers = (
            "SELECT count(*) FROM timekeeping.timers WHERE kind = 'replenishment_cycle' AND subscription_id = $1 "
            "AND fired_at IS NULL AND cancelled_at IS NULL"
        )
        assert await db.pool.fetchval(cycle_timers, b) == 0
        await command(settings, "resume", b, at=datetime(2025, 4, 2, 11, tzinfo=UTC))

        async def b_released() -> bool:
            return (await state_of(db, b)).get("held") is False

        await eventually(b_released, what="B resumed")
        await customer_command(settings, a, SkipNextParams(), f"{a}/skip-1")

        async def skipped() -> bool:
            return (await state_of(db, a)).get("skipped") == ["2025-04-29"]

        await eventually(skipped, what="the skip")
        await orders.settle(1.0)
        await invoices.wait_for(4)

    by_sub: dict[str, list[dict[str, Any]]] = {a: [], b: []}
    for v in orders.values():
        if v["subject"] in by_sub:
            by_sub[v["subject"]].append(v)
    orders_a = [v["data"] for v in by_sub[a] if v["type"] == ev.REPLENISHMENT_ORDER_CREATED]
    orders_b = [v["data"] for v in by_sub[b] if v["type"] == ev.REPLENISHMENT_ORDER_CREATED]
    # A, cycle 1 (Mar 1): no list price yet, catalog 12.00 x 2 = 24.00.
    # A, cycle 2 (delayed to Apr 1): list 15.00, capped at 12.00 + 10 % = 13.20; 2 x 13.20 = 26.40.
    assert [(o["cycle"], o["due_date"], o["status"], D(o["subtotal"])) for o in orders_a] == [
        (1, "2025-03-01", "delivered", D("24.00")),
        (2, "2025-04-01", "delivered", D("26.40")),
    ]
    assert orders_a[0]["lines"][0]["price_basis"] == "catalog price from 2024-01-01"
    assert orders_a[1]["lines"][0]["price_basis"].startswith("price list from 2025-03-10")
    assert "capped at 10% change from 12.00" in orders_a[1]["lines"][0]["price_basis"]
    # B orders 5 with 3 in stock: partial, 3 x 12.00 = 36.00 on Mar 1; 3 x 13.20 = 39.60 on Mar 29.
    assert [(o["due_date"], o["status"], o["quantity_delivered"], D(o["subtotal"])) for o in orders_b] == [
        ("2025-03-01", "partial", 3, D("36.00")),
        ("2025-03-29", "partial", 3, D("39.60")),
    ]
    delays = [v["data"] for v in by_sub[a] if v["type"] == ev.REPLENISHMENT_CYCLE_DELAYED]
    assert [(d["reason"], d["due_date"], d["next_due"]) for d in delays] == [
        ("customer_delay", "2025-03-29", "2025-04-01"),
        ("customer_skip", "2025-04-29", "2025-05-27"),
    ]
    # Every order has its invoice, with the same lines and the price basis on each.
    issued = {v["data"]["document_number"]: v["data"] for v in invoices.values() if v["subject"] in (a, b)}
    for o in orders_a + orders_b:
        doc = issued[o["invoice_number"]]
        assert D(doc["subtotal"]) == D(o["subtotal"])
        assert [ln["price_basis"] for ln in doc["lines"]] == [ln["price_basis"] for ln in o["lines"]]
    # One pending cycle timer per subscription: A's after the skip (May 27), B's next cycle (Apr 26).
    pending = await db.pool.fetch(
        "SELECT subscription_id, due_at FROM timekeeping.timers WHERE kind = 'replenishment_cycle' "
        "AND fired_at IS NULL AND cancelled_at IS NULL AND subscription_id = ANY($1::text[]) ORDER BY subscription_id",
        [a, b],
    )
    assert [(r["subscription_id"], r["due_at"].date()) for r in pending] == [
        (a, date(2025, 5, 27)),
        (b, date(2025, 4, 26)),
    ]
    # The per-period engine billed nothing for these subscriptions: only the cycles' invoices.
    reasons = await db.pool.fetch(
        "SELECT DISTINCT reason FROM billing.documents WHERE subscription_id = ANY($1::text[])", [a, b]
    )
    assert [r["reason"] for r in reasons] == ["replenishment"]

    shown = subprocess.run(
        [sys.executable, "-m", "som", "billing", "replenishment", "show", a, "--json"],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["next_due"], data["cycle"], data["last_unit_amount"]) == ("2025-05-27", 2, "13.20")
