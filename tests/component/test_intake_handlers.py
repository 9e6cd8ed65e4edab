"""The intake handler on an in-memory store: what a channel payload becomes (a typed lifecycle command
or a rejection) and what it records, with no broker and no database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.intake.handlers import IntakeHandlers
from shared.catalog import cached_catalog
from shared.contracts import events as ev
from shared.contracts.commands import CreateParams
from shared.contracts.envelope import CloudEvent, derived_id
from shared.messaging import topics
from shared.messaging.runtime import Incoming
from tests.component.fakes import FakeIntakeStore, FakeUnitOfWork

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "channels" / "direct" / "01-create.json"
ORDER_ID = "ord-7f3a9c21"  # the sample's order_id
RECEIVED_MS = 1_740_818_000_000


def _order(**changes: Any) -> bytes:
    body = json.loads(SAMPLE.read_text())
    body.update(changes)
    return json.dumps(body).encode()


def _incoming(value: bytes, offset: int = 0) -> Incoming:
    return Incoming(topics.inbound("direct"), None, value, {}, 0, offset, RECEIVED_MS)


def _handlers() -> tuple[IntakeHandlers, FakeIntakeStore]:
    store = FakeIntakeStore()
    return IntakeHandlers(cached_catalog(None), store=store), store


async def _run(handlers: IntakeHandlers, incoming: Incoming) -> list[tuple[str, CloudEvent]]:
    uow = FakeUnitOfWork(service="intake")
    await handlers.on_inbound(incoming, uow)  # type: ignore[arg-type]
    return uow.emitted


async def test_a_direct_order_becomes_one_typed_create_command() -> None:
    handlers, store = _handlers()
    emitted = await _run(handlers, _incoming(_order()))

    assert [(topic, event.type) for topic, event in emitted] == [
        (topics.SUBSCRIPTIONS_COMMANDS, ev.SUBSCRIPTION_COMMAND)
    ]
    event = emitted[0][1]
    cmd = event.payload(ev.SubscriptionCommand)
    subscription_id = derived_id("subscription", "direct", ORDER_ID)
    assert cmd.subscription_id == subscription_id == event.subject
    assert cmd.idempotency_key == f"direct:{ORDER_ID}"
    assert cmd.channel == "direct" and cmd.actor == "channel:direct"
    params = cmd.params
    assert isinstance(params, CreateParams)
    assert (params.plan_id, params.quantity, params.billing_interval, params.currency) == (
        "pro",
        3,
        "P1M",
        "EUR",
    )
    assert params.customer is not None
    assert params.customer.customer_id == derived_id("customer", "direct", "cus-4821")
    assert params.customer.email == "ops@northwind-traders.example"
    assert params.customer.account_id == "acct-northwind"
    assert params.clock is None  # no test-clock header: the system clock

    # what intake recorded: the order under its key, the customer, the channel id's mapping
    assert store.orders[("direct", ORDER_ID)]["subscription_id"] == subscription_id
    assert store.orders[("direct", ORDER_ID)]["action"] == "create"
    assert store.customers[params.customer.customer_id]["email"] == "ops@northwind-traders.example"
    assert store.mappings[("direct", ORDER_ID)].subscription_id == subscription_id
    assert store.rejections == []


async def test_the_same_order_twice_has_one_effect() -> None:
    handlers, store = _handlers()
    first = await _run(handlers, _incoming(_order(), offset=0))
    again = await _run(handlers, _incoming(_order(), offset=1))  # redelivered, e.g. after a crash

    assert len(first) == 1
    assert again == []
    assert list(store.orders) == [("direct", ORDER_ID)]
    assert store.rejections == []


async def test_an_unknown_plan_is_rejected_with_unknown_plan() -> None:
    handlers, store = _handlers()
    emitted = await _run(handlers, _incoming(_order(plan="no-such-plan")))

    assert [(topic, event.type) for topic, event in emitted] == [(topics.ORDERS_REJECTED, ev.ORDER_REJECTED)]
    rejected = emitted[0][1].payload(ev.OrderRejected)
    assert [r.code for r in rejected.reasons] == ["UNKNOWN_PLAN"]
    assert rejected.channel == "direct" and rejected.channel_subscription_id == ORDER_ID
    # recorded for the operators; no order, no subscription mapping
    assert [[r["code"] for r in row["reasons"]] for row in store.rejections] == [["UNKNOWN_PLAN"]]
    assert store.rejections[0]["channel_subscription_id"] == ORDER_ID
    assert store.orders == {} and store.mappings == {}
