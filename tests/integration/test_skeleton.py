"""The walking skeleton end to end: direct order -> subscription -> invoice + entitlements.

Real Tansu broker (or Kafka), real PostgreSQL, the four real workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.db.uow import Database
from shared.messaging import topics
from shared.messaging.faults import faults
from shared.messaging.topics import dlq_topic
from shared.settings import Settings
from shared.timekeeping import create_clock
from som.dlq import AlreadyReplayed, read_dead_letters, replay
from som.orders import direct_order, subscription_id_of
from som.runner import child_env
from tests.integration.helpers import TopicReader, publish, running_workers

pytestmark = pytest.mark.integration


def _t(settings: Settings, topic: str) -> str:
    return f"{settings.topic_namespace}{topic}"


async def _count(db: Database, sql: str, *args: object) -> int:
    return int(await db.pool.fetchval(sql, *args))


async def test_direct_order_yields_one_invoice_and_one_entitlement_set_in_one_trace(
    settings: Settings, db: Database, spans: InMemorySpanExporter
) -> None:
    order = direct_order(plan="pro", quantity=3, effective_at=None)
    order["effective_at"] = "2025-01-31T10:00:00.000Z"
    sub_id = subscription_id_of(order)
    bootstrap = str(settings.kafka_bootstrap)
    clock = f"{settings.topic_namespace}clock"  # business time stands still: no renewal catches up
    await create_clock(db.pool, clock, datetime(2025, 1, 31, 10, tzinfo=UTC))
    async with running_workers(settings, db):
        async with (
            TopicReader(bootstrap, _t(settings, topics.BILLING_INVOICES)) as invoices,
            TopicReader(bootstrap, _t(settings, topics.ENTITLEMENTS_CHANGED)) as ents,
        ):
            await publish(
                settings,
                topics.inbound("direct"),
                order,
                key=order["order_id"],
                headers={"som-test-clock": clock},
            )
            await invoices.wait_for(1)
            await ents.wait_for(1)
            await invoices.settle(1.0)
            await ents.settle(0.2)
    assert len(invoices.records) == 1 and len(ents.records) == 1
    inv = invoices.values()[0]
    assert inv["specversion"] == "1.0" and inv["subject"] == sub_id
    assert {
        "id",
        "source",
        "type",
        "time",
        "datacontenttype",
        "dataschema",
        "correlationid",
        "causationid",
    } <= set(inv)
    data = inv["data"]
    # Pro is 49.00 USD a month; 3 seats billed in advance for the first full period.
    assert Decimal(data["total"]) == Decimal("147.00")
    assert data["lines"][0]["service_period_start"] == "2025-01-31"
    assert data["lines"][0]["service_period_end"] == "2025-02-28"  # anchored on the 31st, clamped
    assert data["issue_date"] == "2025-01-31"  # business dates come from the event, not the clock
    ent = ents.values()[0]["data"]
    assert ent["version"] == 1 and ent["status"] == "active" and "sso" in ent["features"]
    assert (
        await _count(db, "SELECT count(*) FROM lifecycle.audit_trail WHERE subscription_id = $1", sub_id) == 1
    )

    # One trace across the four services: every process span of this namespace shares one trace id.
    ns = settings.topic_namespace
    process_spans = [s for s in spans.get_finished_spans() if ns in s.name and "process" in s.name]
    processed_topics = {s.name.split(" ")[0] for s in process_spans}
    assert {
        _t(settings, topics.inbound("direct")),
        _t(settings, topics.SUBSCRIPTIONS_COMMANDS),
        _t(settings, topics.SUBSCRIPTIONS_EVENTS),
    } <= processed_topics
    trace_ids = {s.context.trace_id for s in process_spans}
    assert len(trace_ids) == 1
    db_spans = [
        s
        for s in spans.get_finished_spans()
        if s.context.trace_id in trace_ids and s.attributes and s.attributes.get("db.system") == "postgresql"
    ]
    assert db_spans, "database calls are spans of the order's trace"


async def test_same_inbound_message_twice_has_one_effect(settings: Settings, db: Database) -> None:
    order = direct_order(plan="starter", quantity=1)
    sub_id = subscription_id_of(order)
    bootstrap = str(settings.kafka_bootstrap)
    async with running_workers(settings, db):
        async with (
            TopicReader(bootstrap, _t(settings, topics.BILLING_INVOICES)) as invoices,
            TopicReader(bootstrap, _t(settings, topics.ENTITLEMENTS_CHANGED)) as ents,
        ):
            await publish(settings, topics.inbound("direct"), order, key=order["order_id"])
            await publish(settings, topics.inbound("direct"), order, key=order["order_id"])
            await invoices.wait_for(1)
            await invoices.settle(2.0)
            await ents.settle(0.5)
    assert len(invoices.records) == 1
    assert len(ents.records) == 1
    assert (
        await _count(db, "SELECT count(*) FROM lifecycle.subscriptions WHERE subscription_id = $1", sub_id)
        == 1
    )
    assert await _count(db, "SELECT count(*) FROM billing.documents WHERE subscription_id = $1", sub_id) == 1
    assert (
        await _count(
            db, "SELECT version FROM entitlements.entitlement_sets WHERE subscription_id = $1", sub_id
        )
        == 1
    )


async def test_unknown_plan_is_rejected_with_reason(settings: Settings, db: Database) -> None:
    order = direct_order(plan="platinum-unicorn")
    async with running_workers(settings, db, names=("intake",)):
        async with TopicReader(str(settings.kafka_bootstrap), _t(settings, topics.ORDERS_REJECTED)) as rej:
            await publish(settings, topics.inbound("direct"), order, key=order["order_id"])
            await rej.wait_for(1)
    data = rej.values()[0]["data"]
    codes = {(r["code"], r["field"]) for r in data["reasons"]}
    assert ("UNKNOWN_PLAN", "plan") in codes
    assert data["channel"] == "direct"


async def test_database_unavailable_twice_then_exactly_once(settings: Settings, db: Database) -> None:
    order = direct_order(plan="pro", quantity=2)
    sub_id = subscription_id_of(order)
    async with running_workers(settings, db):
        faults.arm("db_unavailable:billing", times=2)
        try:
            async with TopicReader(
                str(settings.kafka_bootstrap), _t(settings, topics.BILLING_INVOICES)
            ) as inv:
                await publish(settings, topics.inbound("direct"), order, key=order["order_id"])
                await inv.wait_for(1, timeout=30)
                await inv.settle(1.5)
        finally:
            faults.disarm()
    assert len(inv.records) == 1
    assert await _count(db, "SELECT count(*) FROM billing.documents WHERE subscription_id = $1", sub_id) == 1


async def test_unparseable_order_goes_to_dlq_and_fixed_replay_applies_once(
    settings: Settings, db: Database
) -> None:
    bootstrap = str(settings.kafka_bootstrap)
    good = direct_order(plan="starter")
    fixed = direct_order(plan="pro", quantity=2)
    async with running_workers(settings, db):
        async with TopicReader(bootstrap, _t(settings, topics.BILLING_INVOICES)) as inv:
            await publish(settings, topics.inbound("direct"), b"{this is not json", key="broken-1")
            await publish(settings, topics.inbound("direct"), good, key=good["order_id"])
            await inv.wait_for(1)  # the worker kept serving after the poison message
            dlq = dlq_topic(_t(settings, topics.inbound("direct")), settings.group("intake"))
            letters = []
            for _ in range(50):
                letters = await read_dead_letters(bootstrap, [dlq], db.pool)
                if letters:
                    break
                await asyncio.sleep(0.2)
            assert len(letters) == 1
            letter = letters[0]
            assert letter.value == b"{this is not json"
            assert letter.headers["x-original-topic"] == _t(settings, topics.inbound("direct"))
            assert letter.headers["x-dlq-reason"] == "permanent"
            assert letter.headers["x-exception-type"] and letter.headers["x-exception-message"]

            payload = _write_tmp(json.dumps(fixed).encode())
            await replay(bootstrap, db.pool, letter, payload=payload)
            with pytest.raises(AlreadyReplayed):
                await replay(bootstrap, db.pool, letter, payload=payload)
            await replay(bootstrap, db.pool, letter, payload=payload, force=True)  # bytes seen: no effect
            # A second copy of the same failure (the DLQ send is at-least-once: a worker killed
            # before its offset commit sends it again) is known as a copy and not replayed again.
            await publish(
                settings, dlq[len(settings.topic_namespace) :], letter.value, headers=letter.headers
            )
            letters = await read_dead_letters(bootstrap, [dlq], db.pool)
            assert len(letters) == 2
            copy = letters[1]
            assert copy.copy_of == letter.offset and copy.replayed and letters[0].copy_of is None
            with pytest.raises(AlreadyReplayed):
                await replay(bootstrap, db.pool, copy, payload=payload)
            await inv.wait_for(2)
            await inv.settle(2.0)
    subjects = [v["subject"] for v in inv.values()]
    assert subjects.count(subscription_id_of(fixed)) == 1
    assert len(subjects) == 2


def _write_tmp(data: bytes) -> os.PathLike[str]:
    import tempfile
    from pathlib import Path

    f = Path(tempfile.mkstemp(suffix=".json")[1])
    f.write_bytes(data)
    return f


async def test_worker_killed_between_commit_and_publish_loses_nothing(
    settings: Settings, db: Database
) -> None:
    """The billing worker process dies right after its commit; a restarted one publishes the invoice."""
    order = direct_order(plan="pro", quantity=1)
    sub_id = subscription_id_of(order)
    env = child_env(settings, SOM_FAULTS="crash_after_commit", SOM_LOG_JSON="false")
    billing = subprocess.Popen(
        [sys.executable, "-m", "som", "worker", "billing"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with running_workers(settings, db, names=("intake", "lifecycle", "entitlements")):
            await publish(settings, topics.inbound("direct"), order, key=order["order_id"])
            for _ in range(300):
                if billing.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            assert billing.returncode == 137, "the billing worker should have died after its commit"
            # Its state committed, its events did not leave: the invoice (with its issue-date
            # journal entry and payment request) waits in the outbox.
            assert (
                await _count(db, "SELECT count(*) FROM billing.documents WHERE subscription_id = $1", sub_id)
                == 1
            )
            assert (
                await _count(
                    db,
                    "SELECT count(*) FROM messaging.outbox WHERE service = $1 AND topic = $2",
                    f"{settings.topic_namespace}billing",
                    _t(settings, topics.BILLING_INVOICES),
                )
                == 1
            )
            async with TopicReader(
                str(settings.kafka_bootstrap), _t(settings, topics.BILLING_INVOICES)
            ) as inv:
                assert await inv.settle(0.5) == []
                async with running_workers(settings, db, names=("billing",)):
                    await inv.wait_for(1, timeout=20)
                    await inv.settle(2.0)
            assert len(inv.records) == 1
            assert (
                await _count(db, "SELECT count(*) FROM billing.documents WHERE subscription_id = $1", sub_id)
                == 1
            )
    finally:
        if billing.poll() is None:
            billing.send_signal(signal.SIGKILL)
            billing.wait(5)
