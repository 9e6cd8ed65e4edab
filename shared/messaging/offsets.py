"""The true end of a partition, on Apache Kafka and on Tansu alike.

A "latest offset" request (aiokafka ``end_offsets``/``seek_to_end``) is not enough: Tansu answers
the first offset of the last record batch + 1, so a reader that stops there misses the rest of
that batch. What both brokers get right is the high watermark carried by every fetch response.
So a partition's end is the high watermark of a fetch answer, and a partition is read to its end
when a fetch for it returned no records and that fetch's high watermark is not beyond the position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.protocol.metadata import MetadataRequest

# How long fetches may come back empty before a partition with records ahead counts as stuck.
_STALL_SECONDS = 10.0


async def read_to_end(
    consumer: AIOKafkaConsumer,
    tps: Iterable[TopicPartition],
    on_record: Callable[[ConsumerRecord], None] | None = None,
    *,
    fetch_timeout_ms: int = 200,
) -> dict[TopicPartition, int]:
    """Read the assigned ``tps`` from their current positions to their true ends.

    Calls ``on_record`` for every record read and returns the end offset of each partition
    (the offset the next record will get). ``consumer`` must have ``tps`` assigned (afresh: a
    high watermark left from an earlier assignment would end a partition early).
    ``fetch_timeout_ms`` bounds one wait for records; an empty answer waits all of it, so a
    caller that expects no records (an end check) passes a short one.
    """
    pending = set(tps)
    ends: dict[TopicPartition, int] = {}
    loop = asyncio.get_running_loop()
    stalled_at = loop.time() + _STALL_SECONDS
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=fetch_timeout_ms)
        for records in batch.values():
            if on_record is not None:
                for r in records:
                    on_record(r)
        for tp in list(pending):
            if batch.get(tp):
                continue
            high = consumer.highwater(tp)
            position = await consumer.position(tp)
            # No fetch answered for this partition yet: high is None; keep fetching.
            if high is not None and high <= position:
                ends[tp] = position
                pending.discard(tp)
        if any(batch.values()):
            stalled_at = loop.time() + _STALL_SECONDS
        elif loop.time() > stalled_at:
            raise TimeoutError(f"no progress reading {sorted(map(str, pending))} to the end")
        else:
            await asyncio.sleep(0)
    return ends


async def partitions_of(consumer: AIOKafkaConsumer, names: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the existing topics among ``names``, from a metadata request for them alone.

    Asked afresh (topics made since the client started), and only for ``names``: the metadata of
    the whole cluster is decoded in Python and grows with it (a test broker holding 40 namespaces'
    topics took 64 ms a request, one for two topics 2 ms). Missing topics are not created: Tansu,
    like Kafka with auto-creation on, would make any topic a metadata request names.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    client = consumer._client
    answer = await client.send(
        client.get_random_node(), MetadataRequest(wanted, allow_auto_topic_creation=False)
    )
    cluster = ClusterMetadata()
    cluster.update_metadata(answer)
    return [TopicPartition(t, p) for t in wanted for p in sorted(cluster.partitions_for_topic(t) or ())]


async def end_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The true end offset of each partition (assigns ``tps`` to ``consumer``).

    The end is the high watermark of the first fetch answer for each partition; no record has to
    be read. Reading the records past the "latest offset" answer, as this did before, stalled on
    Tansu under load: with a short fetch wait it answers a fetch of a large partition empty (with
    the right high watermark) until it has found the records, which took it over a second per
    partition during a 100,000-subscription run, so every quiet check timed out.
    """
    if not tps:
        return {}
    consumer.assign(tps)  # afresh, so no high watermark of an earlier check is taken as this one's
    # Fetches start at the broker's "latest offset": little or nothing to carry back. Left to the
    # fetcher (not a separate request followed by seeks, which its background loop does not see
    # until its idle poll ends: 0.2 s per check), the reset is followed by the fetch at once.
    await consumer.seek_to_end(*tps)
    ends: dict[TopicPartition, int] = {}
    pending = set(tps)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + _STALL_SECONDS
    while pending:
        # Records are not needed, only the answer; all partitions are drained, since records left
        # buffered for one hold back the next fetch of every partition (aiokafka's prefetch backoff).
        await consumer.getmany(timeout_ms=10)
        for tp in list(pending):
            high = consumer.highwater(tp)  # None until a fetch answered for this assignment
            if high is not None:
                ends[tp] = max(high, await consumer.position(tp))
                pending.discard(tp)
        if pending and loop.time() > give_up:
            raise TimeoutError(f"no fetch answer for {sorted(map(str, pending))}")
    return ends
