"""The entitlements handler on an in-memory store: what it stores and emits for lifecycle changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY

from services.entitlements.handlers import EntitlementHandlers
from shared.catalog import cached_catalog
from shared.contracts import events as ev
from shared.contracts.envelope import make_event
from shared.messaging import topics
from shared.messaging.runtime import Incoming
from tests.component.fakes import FakeEntitlementStore, FakeUnitOfWork

SUB = "sub-ent-1"


def _change(version: int, *, status: str = "active", plan: str = "pro", quantity: int = 3) -> Incoming:
    snapshot = ev.SubscriptionSnapshot(
        subscription_id=SUB,
        status=status,
        channel="direct",
        customer=ev.Customer(customer_id="cus-1", email="a@example.com"),
        plan_id=plan,
        quantity=quantity,
        billing_interval="P1M",
        currency="USD",
    )
    data = ev.SubscriptionStateChanged(
        subscription_id=SUB,
        version=version,
        command="create",
        from_status=None,
        to_status=status,
        effective_at=datetime(2025, 1, 31, 10, tzinfo=UTC),
        actor="test",
        snapshot=snapshot,
    )
    event = make_event(
        type=ev.SUBSCRIPTION_STATE_CHANGED,
        source="test",
        subject=SUB,
        data=data,
        correlation_id=f"c-{version}",
        causation_id=f"c-{version}",
    )
    return Incoming(topics.SUBSCRIPTIONS_EVENTS, SUB, event.model_dump_json().encode(), {}, 0, version, 0)


def _handlers() -> tuple[EntitlementHandlers, FakeEntitlementStore]:
    store = FakeEntitlementStore()
    return EntitlementHandlers(cached_catalog(None), store=store), store


async def _run(handlers: EntitlementHandlers, incoming: Incoming) -> list[tuple[str, Any]]:
    uow = FakeUnitOfWork()
    await handlers.on_subscription_event(incoming, uow)  # type: ignore[arg-type]
    return uow.emitted


async def test_first_change_stores_and_emits_version_1() -> None:
    handlers, store = _handlers()
    emitted = await _run(handlers, _change(1))
    assert [t for t, _ in emitted] == [topics.ENTITLEMENTS_CHANGED]
    data = emitted[0][1].data
    assert data["version"] == 1 and data["plan_id"] == "pro" and data["status"] == "active"
    assert store.sets[SUB].version == 1 and store.sets[SUB].lifecycle_version == 1


async def test_same_entitlements_again_emit_nothing_but_record_the_version() -> None:
    handlers, store = _handlers()
    await _run(handlers, _change(1))
    assert await _run(handlers, _change(2)) == []
    assert store.sets[SUB].version == 1 and store.sets[SUB].lifecycle_version == 2


async def test_stale_lifecycle_version_is_ignored() -> None:
    handlers, store = _handlers()
    await _run(handlers, _change(5, plan="pro"))
    assert await _run(handlers, _change(4, plan="enterprise", quantity=10)) == []
    assert store.sets[SUB].body["plan_id"] == "pro" and store.sets[SUB].lifecycle_version == 5


async def test_a_plan_change_emits_the_next_version() -> None:
    handlers, store = _handlers()
    await _run(handlers, _change(1, plan="pro"))
    emitted = await _run(handlers, _change(2, plan="enterprise", quantity=10))
    assert len(emitted) == 1 and emitted[0][1].data["version"] == 2
    assert emitted[0][1].data["plan_id"] == "enterprise"
    assert store.sets[SUB].version == 2


async def test_events_other_than_state_changes_are_ignored() -> None:
    handlers, store = _handlers()
    event = make_event(
        type="som.other",
        source="test",
        subject=SUB,
        data=ev.SubscriptionCommandRejected(
            subscription_id=SUB, command="x", idempotency_key="k", status=None, reason_code="X", message="m"
        ),
        correlation_id="c",
        causation_id="c",
    )
    incoming = Incoming(topics.SUBSCRIPTIONS_EVENTS, SUB, event.model_dump_json().encode(), {}, 0, 0, 0)
    assert await _run(handlers, incoming) == [] and store.sets == {}


async def test_sync_lag_is_measured_from_the_record_timestamp() -> None:
    handlers, _ = _handlers()
    # A record stamped at the epoch: the lag is the whole wall clock; one stamped in the future is clamped.
    await _run(handlers, replace(_change(1), timestamp_ms=0))
    assert (REGISTRY.get_sample_value("som_entitlement_sync_lag_seconds") or 0) > 1_700_000_000
    await _run(handlers, replace(_change(2), timestamp_ms=10**15))
    assert REGISTRY.get_sample_value("som_entitlement_sync_lag_seconds") == 0
