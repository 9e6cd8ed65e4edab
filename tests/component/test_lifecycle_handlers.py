"""The lifecycle handler on an in-memory store: what a command stores (state, audit row, timers) and
emits, with no broker and no database. The business clock is a test clock of the fake store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.lifecycle.handlers import LifecycleHandlers
from shared.catalog import cached_catalog
from shared.contracts import events as ev
from shared.contracts.commands import CommandParams, ConvertTrialParams, CreateParams
from shared.contracts.envelope import CloudEvent, make_event
from shared.messaging import topics
from shared.messaging.runtime import Incoming
from tests.component.fakes import FakeLifecycleStore, FakeUnitOfWork

SUB = "sub-life-1"
CLOCK = "component-clock"
NOW = datetime(2025, 3, 1, 8, 30, tzinfo=UTC)
CUSTOMER = ev.Customer(customer_id="cus-1", email="ops@example.com", name="Example Ltd", country="DE")


def _create() -> CreateParams:
    return CreateParams(
        plan_id="pro", quantity=3, billing_interval="P1M", currency="EUR", customer=CUSTOMER, clock=CLOCK
    )


def _command(params: CommandParams, key: str, *, offset: int = 0) -> Incoming:
    cmd = ev.SubscriptionCommand(
        subscription_id=SUB,
        idempotency_key=key,
        channel="direct",
        effective_at=NOW,
        actor="channel:direct",
        params=params,
    )
    event = make_event(
        type=ev.SUBSCRIPTION_COMMAND,
        source="test",
        subject=SUB,
        data=cmd,
        correlation_id=f"corr-{key}",
        causation_id=f"corr-{key}",
    )
    return Incoming(topics.SUBSCRIPTIONS_COMMANDS, SUB, event.model_dump_json().encode(), {}, 0, offset, 0)


def _handlers() -> tuple[LifecycleHandlers, FakeLifecycleStore]:
    store = FakeLifecycleStore(clocks={CLOCK: NOW})
    return LifecycleHandlers(cached_catalog(None), store=store), store


async def _run(handlers: LifecycleHandlers, incoming: Incoming) -> list[tuple[str, CloudEvent]]:
    uow = FakeUnitOfWork(service="lifecycle")
    await handlers.on_command(incoming, uow)  # type: ignore[arg-type]
    return uow.emitted


async def test_create_stores_the_subscription_one_audit_row_and_emits_its_state() -> None:
    handlers, store = _handlers()
    emitted = await _run(handlers, _command(_create(), "order-1"))

    # the subscription, active at version 1, with its commercial terms and owner
    row = store.subscriptions[SUB]
    assert (row["status"], row["version"], row["plan_id"], row["customer_id"]) == (
        "active",
        1,
        "pro",
        "cus-1",
    )
    assert row["state"]["commercial"]["clock"] == CLOCK
    assert store.users[(SUB, "cus-1")] == {"email": "ops@example.com", "role": "owner"}
    # one audit row: nothing -> active by create, at the command's time
    assert len(store.audit) == 1
    audit = store.audit[0]
    assert (audit["from_status"], audit["to_status"], audit["command"]) == (None, "active", "create")
    assert audit["effective_at"] == NOW and audit["correlation_id"] == "corr-order-1"
    assert store.command_keys["order-1"]["outcome"] == "applied"
    # the period end is scheduled on the subscription's clock, as a command back to the lifecycle
    pending = store.pending_timers(SUB)
    renewal = [t for t in pending if t.kind == "renewal_due"]
    assert len(renewal) == 1
    assert renewal[0].clock == CLOCK and renewal[0].topic == topics.SUBSCRIPTIONS_COMMANDS
    assert renewal[0].due_at == datetime(2025, 4, 1, tzinfo=UTC)  # one month from the day it began
    # one state-change event with the snapshot billing and entitlements read
    assert [(topic, event.type) for topic, event in emitted] == [
        (topics.SUBSCRIPTIONS_EVENTS, ev.SUBSCRIPTION_STATE_CHANGED)
    ]
    change = emitted[0][1].payload(ev.SubscriptionStateChanged)
    assert (change.subscription_id, change.version, change.command) == (SUB, 1, "create")
    assert (change.from_status, change.to_status) == (None, "active")
    snap = change.snapshot
    assert (snap.status, snap.plan_id, snap.quantity, snap.currency) == ("active", "pro", 3, "EUR")
    assert snap.customer.customer_id == "cus-1" and snap.clock == CLOCK
    assert snap.current_period_end == renewal[0].due_at.date()


async def test_the_same_idempotency_key_twice_has_one_effect() -> None:
    handlers, store = _handlers()
    first = await _run(handlers, _command(_create(), "order-1", offset=0))
    timers_after_first = list(store.timers)
    again = await _run(handlers, _command(_create(), "order-1", offset=1))

    assert len(first) == 1
    assert again == []
    assert store.subscriptions[SUB]["version"] == 1
    assert len(store.audit) == 1
    assert store.timers == timers_after_first  # none set or cancelled a second time
    assert store.command_keys["order-1"]["outcome"] == "applied"


async def test_a_command_not_allowed_in_the_state_is_rejected() -> None:
    handlers, store = _handlers()
    await _run(handlers, _command(_create(), "order-1"))
    before: dict[str, Any] = dict(store.subscriptions[SUB])
    timers_before = list(store.timers)

    emitted = await _run(handlers, _command(ConvertTrialParams(), "convert-1"))  # active: no trial to end

    assert [(topic, event.type) for topic, event in emitted] == [
        (topics.SUBSCRIPTIONS_COMMAND_REJECTIONS, ev.SUBSCRIPTION_COMMAND_REJECTED)
    ]
    rejected = emitted[0][1].payload(ev.SubscriptionCommandRejected)
    assert (rejected.subscription_id, rejected.command, rejected.idempotency_key) == (
        SUB,
        "convert_trial",
        "convert-1",
    )
    assert (rejected.status, rejected.reason_code) == ("active", "NOT_IN_TRIAL")
    # nothing changed but the key's outcome
    assert store.subscriptions[SUB] == before
    assert len(store.audit) == 1
    assert store.timers == timers_before
    assert store.command_keys["convert-1"]["outcome"] == "rejected"
