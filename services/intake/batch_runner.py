"""The partner CSV batch: publish each row as a direct order and wait for every row's outcome.

``som intake batch`` calls :func:`run_batch`; the outcomes are read from the topics intake
produces, and for rows decided in an earlier run from intake's tables (``views``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.intake import views
from shared.messaging import topics
from shared.messaging.kafka_util import topic_partitions
from shared.messaging.views import seen_event_ids
from shared.settings import Settings

log = logging.getLogger("som.intake.batch")
NAME = "intake"  # the worker whose consumer group's inbox tells which rows it has seen


class BatchError(Exception):
    """The batch cannot run (unreadable file, missing topic); the message says why."""


@asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    from shared.db.pool import create_pool

    assert settings.database_url
    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@dataclass
class RowOutcome:
    """Where one CSV row ended."""

    row_number: int
    order_id: str | None
    outcome: str  # accepted | rejected | no_outcome
    reasons: list[dict[str, Any]] = field(default_factory=list)
    where: str = ""  # local | topic | database


@dataclass
class BatchSummary:
    """The result of one batch run."""

    file: str
    rows: int
    published: int
    accepted: int
    rejected: int
    no_outcome: int
    by_reason: dict[str, int]
    rejected_locally: int
    accepted_before: int  # orders intake had accepted in an earlier run (no new command)
    rejected_before: int  # the very same row refused in an earlier run (no new rejection)
    publish_seconds: float
    seconds: float
    rows_per_second: float
    outcomes: list[RowOutcome] = field(default_factory=list)

    def as_dict(self, *, with_rows: bool = True) -> dict[str, Any]:
        """JSON-ready form; ``rejected_rows`` lists each refused row with its reasons."""
        doc = {k: v for k, v in self.__dict__.items() if k != "outcomes"}
        if with_rows:
            doc["rejected_rows"] = [
                {"row": o.row_number, "order_id": o.order_id, "reasons": o.reasons, "where": o.where}
                for o in self.outcomes
                if o.outcome == "rejected"
            ]
            doc["rows_without_outcome"] = [
                {"row": o.row_number, "order_id": o.order_id}
                for o in self.outcomes
                if o.outcome == "no_outcome"
            ]
        return doc


def _reason_dicts(reasons: Any) -> list[dict[str, Any]]:
    return [r.model_dump() for r in reasons]


async def _known_before(
    settings: Settings, rows: list[Any], warn: Callable[[str], None]
) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Rows whose outcome exists already and will not come again on the topics.

    An order id intake accepted before is never applied twice (no new command); the very same
    bytes processed before are dropped by the worker's inbox (no new rejection either).
    """
    from shared.messaging.runtime import Incoming, content_id

    if not rows or not settings.database_url:
        return {}
    by_hash = {
        content_id(Incoming(topics.inbound("direct"), None, r.payload, {}, 0, 0, 0)): r.order_id for r in rows
    }
    ids = [r.order_id for r in rows]
    found: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    try:
        async with _pool(settings) as pool:
            for key in await views.accepted_order_keys(pool, "direct", ids):
                found[key] = ("accepted", [])
            seen = await seen_event_ids(pool, settings.group(NAME), list(by_hash))
            again = [by_hash[e] for e in seen if by_hash[e] not in found]
            if again:
                for event_id, reasons in (
                    await views.latest_rejection_reasons(pool, "direct", again)
                ).items():
                    found[event_id] = ("rejected", reasons)
    except Exception as exc:  # without the database every row is simply waited for on the topics
        warn(f"could not look up earlier outcomes: {exc}")
        return {}
    return found


async def _tail(consumer: AIOKafkaConsumer, names: list[str]) -> None:
    """Assign every partition of ``names`` at its current end (positions resolved now)."""
    tps = []
    for name in names:
        found = await topic_partitions(consumer, name)
        if not found:
            raise BatchError(f"topic {name} does not exist: run `som topics`")
        tps.extend(found)
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)


async def run_batch(
    settings: Settings,
    data: bytes,
    *,
    file_name: str = "-",
    channel: str = "direct",
    timeout: float | None = None,
    headers: dict[str, str] | None = None,
    on_published: Callable[[int, int], None] | None = None,
    on_outcome: Callable[[int, int], None] | None = None,
    lookup_database: bool = True,
    warn: Callable[[str], None] = log.warning,
) -> BatchSummary:
    """Publish every parseable row as a direct order, wait for every row's outcome, summarize.

    Outcomes are read from ``subscriptions.commands`` (accepted: the command whose idempotency
    key is ``direct:<order_id>``) and ``orders.rejected`` (``channel_event_id`` = order id).
    Rows decided before (an order id intake accepted, or the very same row it refused: the
    file sent twice) would get no new outcome on the topics: their outcome is read from the
    database and they are not sent again.
    """
    from services.intake.domain.batch import parse_csv
    from shared.catalog import cached_catalog

    assert settings.kafka_bootstrap
    catalog = cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
    rows = parse_csv(data, catalog=catalog, default_source_channel=channel)
    fatal = [r for r in rows if r.row_number == 0]
    if fatal:
        text = "; ".join(f"{x.code}: {x.message}" for r in fatal for x in r.reasons)
        raise BatchError(f"{file_name}: {text}")
    started = time.perf_counter()
    outcomes: dict[int, RowOutcome] = {}
    pending: dict[str, int] = {}  # order id -> row number
    publishable = []
    for row in rows:
        if row.ok and row.payload is not None and row.order_id:
            publishable.append(row)
            pending[row.order_id] = row.row_number
        else:
            outcomes[row.row_number] = RowOutcome(
                row.row_number, row.order_id, "rejected", _reason_dicts(row.reasons), "local"
            )
    ns = settings.topic_namespace
    known_before = await _known_before(settings, publishable, warn) if lookup_database else {}
    for order_id, (prior, prior_reasons) in known_before.items():
        number = pending.pop(order_id)
        outcomes[number] = RowOutcome(number, order_id, prior, prior_reasons, "database")
    # Decided before: sending them again would only queue duplicates in front of the new rows.
    to_send = [r for r in publishable if r.order_id not in known_before]
    commands_topic, rejected_topic = f"{ns}{topics.SUBSCRIPTIONS_COMMANDS}", f"{ns}{topics.ORDERS_REJECTED}"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    publish_seconds = 0.0
    try:
        await _tail(consumer, [commands_topic, rejected_topic])
        total = len(to_send)
        done_count = len(outcomes)
        if on_outcome:
            on_outcome(done_count, len(rows))

        def resolve(order_id: str, outcome: RowOutcome) -> None:
            nonlocal done_count
            number = pending.pop(order_id, None)
            if number is None:
                return
            outcome.row_number = number
            outcomes[number] = outcome
            done_count += 1
            if on_outcome:
                on_outcome(done_count, len(rows))

        async def collect() -> None:
            while pending:
                batch = await consumer.getmany(timeout_ms=300, max_records=5000)
                for tp, records in batch.items():
                    for rec in records:
                        try:
                            data_ = json.loads(rec.value)["data"]
                        except (ValueError, KeyError, TypeError):
                            continue
                        if data_.get("channel") != "direct":
                            continue
                        if tp.topic == commands_topic:
                            key = str(data_.get("idempotency_key") or "")
                            order_id = key.removeprefix("direct:")
                            if key.startswith("direct:") and order_id in pending:
                                resolve(order_id, RowOutcome(0, order_id, "accepted", where="topic"))
                        else:
                            order_id = str(data_.get("channel_event_id") or "")
                            if order_id in pending:
                                reasons = data_.get("reasons") or []
                                resolve(order_id, RowOutcome(0, order_id, "rejected", reasons, "topic"))

        collector = asyncio.create_task(collect())
        topic = f"{ns}{topics.inbound('direct')}"
        wire_headers = [(k, v.encode()) for k, v in (headers or {}).items()]
        sent = 0
        futures = []
        for row in to_send:
            assert row.payload is not None and row.order_id is not None
            key = (row.change.channel_subscription_id if row.change else None) or row.order_id
            fut = await producer.send(topic, value=row.payload, key=key.encode(), headers=wire_headers)
            futures.append(fut)
            if len(futures) >= 1000:
                await asyncio.gather(*futures)
                sent += len(futures)
                futures.clear()
                if on_published:
                    on_published(sent, total)
        if futures:
            await asyncio.gather(*futures)
            sent += len(futures)
        if on_published:
            on_published(sent, total)
        publish_seconds = time.perf_counter() - started
        limit = timeout if timeout is not None else 60.0 + 0.05 * total
        try:
            async with asyncio.timeout(limit):
                await asyncio.shield(collector)
        except TimeoutError:
            pass
        finally:
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
    finally:
        await consumer.stop()
        await producer.stop()
    accepted_before = sum(k[0] == "accepted" for k in known_before.values())
    if pending and lookup_database and settings.database_url:
        try:
            async with _pool(settings) as pool:
                known = await views.accepted_order_keys(pool, "direct", list(pending))
        except Exception as exc:  # the database is a courtesy here: the topics are the source
            warn(f"could not look up earlier orders: {exc}")
            known = set()
        for order_key in sorted(known):  # accepted, but the action makes no command (e.g. a refresh)
            late = pending.pop(order_key, None)
            if late is not None:
                outcomes[late] = RowOutcome(late, order_key, "accepted", where="database")
    for order_id, number in pending.items():
        outcomes[number] = RowOutcome(number, order_id, "no_outcome")
    seconds = time.perf_counter() - started
    ordered = [outcomes[n] for n in sorted(outcomes)]
    by_reason: Counter[str] = Counter()
    for o in ordered:
        if o.outcome == "rejected":
            for code in {str(r.get("code")) for r in o.reasons}:
                by_reason[code] += 1
    return BatchSummary(
        file=file_name,
        rows=len(rows),
        published=len(to_send),
        accepted=sum(o.outcome == "accepted" for o in ordered),
        rejected=sum(o.outcome == "rejected" for o in ordered),
        no_outcome=sum(o.outcome == "no_outcome" for o in ordered),
        by_reason=dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        rejected_locally=sum(o.where == "local" for o in ordered),
        accepted_before=accepted_before,
        rejected_before=sum(k[0] == "rejected" for k in known_before.values()),
        publish_seconds=round(publish_seconds, 3),
        seconds=round(seconds, 3),
        rows_per_second=round(len(rows) / seconds, 1) if seconds > 0 else 0.0,
        outcomes=ordered,
    )
