"""A failed message dead-lettered twice (worker killed between the DLQ send and its offset commit)
is one failure delivered twice: the chaos verifier and ``som dlq`` count it once."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from shared.messaging.incoming import failure_origin
from som.chaos import _dead_letters


def _dlq_record(offset: int, orig_offset: int | None, value: bytes = b"{not json") -> ConsumerRecord:
    headers = [("x-consumer-group", b"som.intake")]
    if orig_offset is not None:
        headers += [
            ("x-original-topic", b"ns.orders.inbound.direct"),
            ("x-original-partition", b"2"),
            ("x-original-offset", str(orig_offset).encode()),
        ]
    return ConsumerRecord(
        topic="ns.orders.inbound.direct.dlq.som.intake",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=headers,
    )


def test_origin_names_group_topic_partition_and_offset() -> None:
    h = {
        "x-consumer-group": "g",
        "x-original-topic": "t",
        "x-original-partition": "0",
        "x-original-offset": "17",
    }
    assert failure_origin(h) == "g|t/0/17"
    assert failure_origin({**h, "x-original-offset": "18"}) != failure_origin(h)
    assert failure_origin({k: v for k, v in h.items() if k != "x-original-offset"}) is None


def test_same_origin_twice_counts_once_and_reports_the_copy() -> None:
    records = [_dlq_record(0, 5), _dlq_record(1, 6), _dlq_record(2, 5), _dlq_record(3, 7)]
    unique, copies = _dead_letters(records)
    assert [r.offset for r in unique] == [0, 1, 3]
    assert copies == 1


def test_records_without_an_origin_are_never_merged() -> None:
    unique, copies = _dead_letters([_dlq_record(0, None), _dlq_record(1, None)])
    assert len(unique) == 2 and copies == 0
