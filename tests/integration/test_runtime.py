"""The delivery runtime on a real broker and database, with a probe handler.

The probe records each effect in a table and emits one event per message, so the tests
can count effects (must be exactly one) separately from deliveries (may be more).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel

from shared.contracts.envelope import make_event
from shared.db.uow import Database, UnitOfWork
from shared.messaging.admin import ensure_topics
from shared.messaging.faults import faults
from shared.messaging.parking import parked_keys
from shared.messaging.runtime import H_ATTEMPT, Incoming, Route, Worker, content_id
from shared.messaging.topics import TopicSpec, dlq_topic, retry_topic
from shared.settings import Settings
from tests.integration.helpers import TopicReader, publish

pytestmark = pytest.mark.integration

PROBE_IN, PROBE_OUT = "probe.in", "probe.out"


class _Data(dict[str, Any]):
    pass


class _Probe(BaseModel):
    """The probe's event."""

    id: str


async def probe_handler(incoming: Incoming, uow: UnitOfWork) -> None:
    """Parse JSON (or fail permanently), record the effect, emit an event."""
    doc = json.loads(incoming.value)
    if not isinstance(doc, dict) or "id" not in doc:
        raise ValueError("not a probe message")
    await uow.conn.execute(
        "INSERT INTO public.probe_effects (namespace, message_id, key) VALUES ($1, $2, $3)",
        uow.namespace,
        doc["id"],
        incoming.key,
    )
    uow.emit(
        PROBE_OUT,
        make_event(
            type="som.probe",
            source="tests",
            subject=incoming.key,
            data=_Probe(id=doc["id"]),
            correlation_id=doc["id"],
            causation_id=doc["id"],
        ),
    )


async def _probe_worker(settings: Settings, db: Database) -> Worker:
    await _probe_topics(settings, db)
    worker = Worker("probe", [Route(PROBE_IN, probe_handler, event_id=content_id)], settings=settings, db=db)
    await worker.start()
    return worker


async def _probe_topics(settings: Settings, db: Database) -> None:
    ns = settings.topic_namespace
    group = settings.group("probe")
    main = f"{ns}{PROBE_IN}"
    await ensure_topics(
        str(settings.kafka_bootstrap),
        [
            TopicSpec(main, 3),
            TopicSpec(retry_topic(main, group), 3),
            TopicSpec(dlq_topic(main, group), 1),
            TopicSpec(f"{ns}{PROBE_OUT}", 3),
        ],
    )
    await db.pool.execute(
        "CREATE TABLE IF NOT EXISTS public.probe_effects (id bigserial PRIMARY KEY, namespace text, "
        "message_id text, key text, txid bigint DEFAULT txid_current())"
    )


async def _effects(db: Database, settings: Settings) -> list[str]:
    rows = await db.pool.fetch(
        "SELECT message_id FROM public.probe_effects WHERE namespace = $1 ORDER BY id",
        settings.topic_namespace,
    )
    return [r["message_id"] for r in rows]


async def _wait_effects(db: Database, settings: Settings, n: int, timeout: float = 20) -> list[str]:
    for _ in range(int(timeout * 10)):
        got = await _effects(db, settings)
        if len(got) >= n:
            return got
        await asyncio.sleep(0.1)
    return await _effects(db, settings)


async def test_redelivered_message_has_one_effect(settings: Settings, db: Database) -> None:
    worker = await _probe_worker(settings, db)
    try:
        body = {"id": "m1"}
        await publish(settings, PROBE_IN, body, key="k1")
        await publish(settings, PROBE_IN, body, key="k1")  # the same record delivered again
        async with TopicReader(
            str(settings.kafka_bootstrap), f"{settings.topic_namespace}{PROBE_OUT}"
        ) as out:
            await out.wait_for(1)
            await out.settle(1.5)
            assert len(out.records) == 1
        assert await _effects(db, settings) == ["m1"]
    finally:
        await worker.stop()


async def test_skipped_messages_cost_no_transaction_and_their_offsets_commit(
    settings: Settings, db: Database
) -> None:
    """A route's ``skips`` leaves a message untouched (no inbox row, no effect) and still moves on."""
    await _probe_topics(settings, db)
    group = settings.group("probe")
    route = Route(
        PROBE_IN, probe_handler, event_id=content_id, skips=lambda i: bool(json.loads(i.value).get("skip"))
    )
    worker = Worker("probe", [route], settings=settings, db=db)
    await worker.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=str(settings.kafka_bootstrap))
    await admin.start()
    try:
        for body in ({"id": "s1", "skip": True}, {"id": "p1"}, {"id": "s2", "skip": True}):
            await publish(settings, PROBE_IN, body, key="k1")
        assert await _wait_effects(db, settings, 1) == ["p1"]
        partitions = [TopicPartition(f"{settings.topic_namespace}{PROBE_IN}", p) for p in range(3)]
        committed = 0
        for _ in range(100):
            offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
            committed = sum(max(0, o.offset) for o in offsets.values())
            if committed == 3:
                break
            await asyncio.sleep(0.1)
        assert committed == 3  # all three records are behind the group, the skipped ones too
        inbox = await db.pool.fetchval(
            "SELECT count(*) FROM messaging.inbox WHERE consumer_group = $1", group
        )
        assert inbox == 1  # only the processed message was claimed
        assert await _effects(db, settings) == ["p1"]
    finally:
        await admin.close()
        await worker.stop()


async def test_a_batch_commits_the_offsets_of_its_own_partitions_only(
    settings: Settings, db: Database
) -> None:
    """Offsets are committed for the partitions a batch read, not for every assigned partition.

    FastStream's ack committed all of them each batch (60 for intake's main consumer), which the
    worker and the broker encoded and processed per batch whatever the traffic.
    """
    worker = await _probe_worker(settings, db)
    admin = AIOKafkaAdminClient(bootstrap_servers=str(settings.kafka_bootstrap))
    await admin.start()
    try:
        for i in range(5):  # one key: one partition
            await publish(settings, PROBE_IN, {"id": f"c{i}"}, key="only-key")
        assert len(await _wait_effects(db, settings, 5)) == 5
        partitions = [TopicPartition(f"{settings.topic_namespace}{PROBE_IN}", p) for p in range(3)]
        offsets: dict[TopicPartition, int] = {}
        for _ in range(100):
            got = await admin.list_consumer_group_offsets(settings.group("probe"), partitions=partitions)
            offsets = {tp: o.offset for tp, o in got.items()}
            if 5 in offsets.values():
                break
            await asyncio.sleep(0.1)
        busy = [tp for tp, offset in offsets.items() if offset == 5]
        assert len(busy) == 1, offsets  # all five are behind the group on their partition
        assert all(offsets[tp] == -1 for tp in partitions if tp not in busy), offsets  # never committed
    finally:
        await admin.close()
        await worker.stop()


async def test_database_outage_pauses_and_uses_no_retry(settings: Settings, db: Database) -> None:
    """An unreachable database is not the message's fault: consumption waits, nothing goes to retry."""
    worker = await _probe_worker(settings, db)
    try:
        faults.arm("db_unavailable:probe", times=3)
        await publish(settings, PROBE_IN, {"id": "r1"}, key="k1")
        assert await _wait_effects(db, settings, 1) == ["r1"]
        ns = settings.topic_namespace
        retry = retry_topic(f"{ns}{PROBE_IN}", settings.group("probe"))
        async with TopicReader(str(settings.kafka_bootstrap), retry) as r:
            await r.settle(1.0)
            assert r.records == []  # no hop to the retry topic: the outage used up nothing
        async with TopicReader(str(settings.kafka_bootstrap), f"{ns}{PROBE_OUT}") as out:
            await out.wait_for(1)
            await out.settle(1.0)
            assert len(out.records) == 1
    finally:
        faults.disarm()
        await worker.stop()


async def test_message_failure_is_retried_and_applied_once(settings: Settings, db: Database) -> None:
    """A failure of the message itself goes to the retry topic once, then is retried in place."""
    worker = await _probe_worker(settings, db)
    try:
        faults.arm("handler_error:probe", times=2)  # the first try in the batch, then one retry
        await publish(settings, PROBE_IN, {"id": "r1"}, key="k1")
        assert await _wait_effects(db, settings, 1) == ["r1"]
        ns = settings.topic_namespace
        retry = retry_topic(f"{ns}{PROBE_IN}", settings.group("probe"))
        async with TopicReader(str(settings.kafka_bootstrap), retry) as r:
            await r.wait_for(1)
            await r.settle(0.5)
            assert len(r.records) == 1  # one hop to the retry topic, then retried in place
            headers = {k: v.decode() for k, v in r.records[0].headers}
            assert headers[H_ATTEMPT] == "1"
            assert headers["x-exception-type"] == "builtins.RuntimeError"
        async with TopicReader(str(settings.kafka_bootstrap), f"{ns}{PROBE_OUT}") as out:
            await out.wait_for(1)
            await out.settle(1.0)
            assert len(out.records) == 1
        assert await parked_keys(db.pool, settings.group("probe")) == {}
    finally:
        faults.disarm()
        await worker.stop()


async def test_parked_key_is_not_overtaken(settings: Settings, db: Database) -> None:
    worker = await _probe_worker(settings, db)
    try:
        faults.arm("handler_error:probe", times=1)  # only the first message fails
        await publish(settings, PROBE_IN, {"id": "a1"}, key="sub-A")
        await asyncio.sleep(0.3)
        await publish(settings, PROBE_IN, {"id": "a2"}, key="sub-A")
        await publish(settings, PROBE_IN, {"id": "b1"}, key="sub-B")
        got = await _wait_effects(db, settings, 3)
        assert sorted(got) == ["a1", "a2", "b1"]
        assert got.index("a1") < got.index("a2"), got  # a2 waited behind a1
        assert await parked_keys(db.pool, settings.group("probe")) == {}  # everything unparked
    finally:
        faults.disarm()
        await worker.stop()


async def test_batch_with_a_failing_message_commits_the_rest_in_order(
    settings: Settings, db: Database
) -> None:
    """Many messages per batch: one fails and parks its key, its followers wait, the rest commit once."""
    await _probe_topics(settings, db)
    keys = [f"sub-{i}" for i in range(6)]
    for n in range(10):
        for k in keys:
            await publish(settings, PROBE_IN, {"id": f"{k}:{n:02d}"}, key=k)
    faults.arm("handler_error:probe", times=1)  # one message of the first batch fails
    worker = await _probe_worker(settings, db)
    try:
        got = await _wait_effects(db, settings, 60, timeout=40)
        assert len(got) == 60 and len(set(got)) == 60, got
        for k in keys:
            mine = [g for g in got if g.startswith(f"{k}:")]
            assert mine == sorted(mine), mine  # the failed key's followers did not overtake it
        transactions = await db.pool.fetchval(
            "SELECT count(DISTINCT txid) FROM public.probe_effects WHERE namespace = $1",
            settings.topic_namespace,
        )
        assert transactions < 60  # several messages committed per transaction
        assert await parked_keys(db.pool, settings.group("probe")) == {}
    finally:
        faults.disarm()
        await worker.stop()


async def test_one_lane_slot_takes_a_polls_partitions_in_one_transaction(
    settings: Settings, db: Database
) -> None:
    """With one lane at a time, the partitions of a poll share a transaction (one claim, one commit)."""
    from aiokafka.partitioner import DefaultPartitioner

    one_slot = settings.model_copy(update={"consumer_lanes": 1})
    await _probe_topics(one_slot, db)
    partition_of = DefaultPartitioner()
    keys = ["sub-0", "sub-5", "sub-3"]
    assert sorted(partition_of(k.encode(), [0, 1, 2], [0, 1, 2]) for k in keys) == [0, 1, 2]
    for n in range(5):
        for k in keys:
            await publish(one_slot, PROBE_IN, {"id": f"{k}:{n}"}, key=k)
    worker = await _probe_worker(one_slot, db)
    try:
        got = await _wait_effects(db, one_slot, 15)
        assert len(got) == 15 and len(set(got)) == 15, got
        for k in keys:
            mine = [g for g in got if g.startswith(f"{k}:")]
            assert mine == sorted(mine), mine  # each key in offset order
        widest = await db.pool.fetchval(
            "SELECT max(n) FROM (SELECT count(DISTINCT key) AS n FROM public.probe_effects "
            "WHERE namespace = $1 GROUP BY txid) AS t",
            one_slot.topic_namespace,
        )
        assert widest == 3  # the three partitions' records committed together
    finally:
        await worker.stop()


async def test_unparseable_goes_to_dlq_and_worker_keeps_serving(settings: Settings, db: Database) -> None:
    worker = await _probe_worker(settings, db)
    try:
        await publish(settings, PROBE_IN, b"\x00not json{", key="bad", headers={"traceparent-note": "x"})
        await publish(settings, PROBE_IN, {"id": "good"}, key="ok")
        assert await _wait_effects(db, settings, 1) == ["good"]
        ns = settings.topic_namespace
        dlq = dlq_topic(f"{ns}{PROBE_IN}", settings.group("probe"))
        async with TopicReader(str(settings.kafka_bootstrap), dlq) as d:
            recs = await d.wait_for(1)
            assert len(recs) == 1
            rec = recs[0]
            assert rec.value == b"\x00not json{"
            h = {k: v.decode() for k, v in rec.headers}
            assert h["x-original-topic"] == f"{ns}{PROBE_IN}"
            assert h["x-original-partition"].isdigit() and h["x-original-offset"].isdigit()
            assert (
                h["x-exception-type"].endswith("UnicodeDecodeError")
                or "JSONDecodeError" in h["x-exception-type"]
            )
            assert h["x-retry-attempt"] == "1"
            assert h["x-first-failure-at"] and h["x-last-failure-at"]
            assert h["x-dlq-reason"] == "permanent"
            assert h["x-consumer-group"] == settings.group("probe")
            assert h["traceparent-note"] == "x"  # original headers are kept
    finally:
        await worker.stop()


async def _one_outbox_row(settings: Settings, db: Database, name: str) -> str:
    """Commit one event of service ``name`` to the outbox (nobody publishes it) and create its
    topic; returns the outbox's service name."""
    async with db.unit_of_work(name) as uow:
        uow.emit(
            PROBE_OUT,
            make_event(
                type="som.probe",
                source="tests",
                subject="k",
                data=_Probe(id="x"),
                correlation_id=str(uuid.uuid4()),
                causation_id=None,
            ),
        )
    await ensure_topics(
        str(settings.kafka_bootstrap), [TopicSpec(f"{settings.topic_namespace}{PROBE_OUT}", 3)]
    )
    return f"{settings.topic_namespace}{name}"


async def test_orphaned_outbox_row_is_published_by_the_relay(settings: Settings, db: Database) -> None:
    """A commit whose publish never happened (the worker died) is published by the next relay."""
    from aiokafka import AIOKafkaProducer

    from shared.messaging.relay import OutboxRelay

    service = await _one_outbox_row(settings, db, "ghost")
    assert await db.pool.fetchval("SELECT count(*) FROM messaging.outbox WHERE service = $1", service) == 1
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    relay = OutboxRelay(db.pool, producer, service, poll_seconds=0.2)
    relay.start()  # never signalled: only its poll finds the row
    try:
        async with TopicReader(
            str(settings.kafka_bootstrap), f"{settings.topic_namespace}{PROBE_OUT}"
        ) as out:
            await out.wait_for(1, timeout=5)
            assert len(out.records) == 1
        assert (
            await db.pool.fetchval("SELECT count(*) FROM messaging.outbox WHERE service = $1", service) == 0
        )
    finally:
        await relay.stop()
        await producer.stop()


async def test_relay_stops_when_the_cancel_arrives_with_the_broker_acknowledgement(
    settings: Settings, db: Database
) -> None:
    """A worker's stop cancels its relay; the cancel may land in the loop turn that delivers the
    broker's acknowledgement. On Python 3.11 ``asyncio.wait_for`` then returned the result and lost
    the cancel: the relay ran on and the stop waited forever (a test hung for 15 minutes in CI)."""
    from aiokafka import AIOKafkaProducer

    from shared.messaging.relay import OutboxRelay

    service = await _one_outbox_row(settings, db, "stopping")

    class CancelOnAcknowledgement(AIOKafkaProducer):
        """A real producer; the relay's task is cancelled in the turn its send is acknowledged."""

        async def send_batch(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            acknowledged = await super().send_batch(*args, **kwargs)
            handed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            def hand_over(done: asyncio.Future[Any]) -> None:
                handed.set_result(done.result())
                relay_task.cancel()

            acknowledged.add_done_callback(hand_over)
            return handed

    producer = CancelOnAcknowledgement(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    relay = OutboxRelay(db.pool, producer, service, poll_seconds=0.2)
    relay.start()
    relay_task = next(t for t in asyncio.all_tasks() if t.get_name() == f"outbox-relay-{service}")
    try:
        await asyncio.wait({relay_task}, timeout=15)
        assert relay_task.cancelled(), "the relay ran on after its cancel"
    finally:
        relay_task.cancel()  # a second cancel gets through where the first was lost
        await asyncio.wait({relay_task}, timeout=5)
        await relay.stop()  # its last drain publishes the row the cancel rolled back
        await producer.stop()
    assert await db.pool.fetchval("SELECT count(*) FROM messaging.outbox WHERE service = $1", service) == 0


async def test_two_members_per_group_keep_per_key_order_and_single_effects(
    settings: Settings, db: Database
) -> None:
    concurrent = settings.model_copy(update={"consumer_concurrency": 2})
    worker = await _probe_worker(concurrent, db)
    try:
        keys = ["sub-1", "sub-2", "sub-3", "sub-4"]
        for n in range(10):
            for k in keys:
                await publish(concurrent, PROBE_IN, {"id": f"{k}:{n:02d}"}, key=k)
        got = await _wait_effects(db, concurrent, 40, timeout=40)
        assert len(got) == 40 and len(set(got)) == 40
        for k in keys:
            mine = [g for g in got if g.startswith(f"{k}:")]
            assert mine == sorted(mine), mine  # each subscription in its own order
    finally:
        await worker.stop()
