"""The relay partitions records itself: it must choose the partition every other Kafka client does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given
from hypothesis import strategies as st

from shared.messaging.kafka_util import key_hash, partition_for


@given(st.binary(max_size=200))
def test_key_hash_is_the_java_clients_positive_murmur2(key: bytes) -> None:
    assert key_hash(key) == murmur2(key) & 0x7FFFFFFF
    assert key_hash.__wrapped__(key) == key_hash(key)  # the cached value is the computed one


@given(st.binary(min_size=1, max_size=80), st.integers(min_value=1, max_value=64))
def test_keyed_records_go_where_aiokafkas_default_partitioner_sends_them(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_records_without_a_key_go_to_one_of_the_partitions() -> None:
    seen = {partition_for(None, [0, 1, 2]) for _ in range(200)}
    assert seen <= {0, 1, 2} and len(seen) > 1
