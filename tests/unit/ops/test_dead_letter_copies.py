"""A failed message dead-lettered twice (worker killed between the DLQ send and its offset commit)
is one failure delivered twice: ``som dlq`` and the chaos verifier count it once."""

from __future__ import annotations

from shared.messaging.incoming import failure_origin
from som.dlq import DeadLetter, mark_copies


def _letter(offset: int, orig_offset: int | None) -> DeadLetter:
    headers = {"x-consumer-group": "som.intake"}
    if orig_offset is not None:
        headers |= {
            "x-original-topic": "ns.orders.inbound.direct",
            "x-original-partition": "2",
            "x-original-offset": str(orig_offset),
        }
    return DeadLetter("ns.orders.inbound.direct.dlq.som.intake", 0, offset, None, b"{not json", headers)


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
    letters = [_letter(0, 5), _letter(1, 6), _letter(2, 5), _letter(3, 7)]
    mark_copies(letters)
    assert [x.copy_of for x in letters] == [None, None, 0, None]
    assert [x.offset for x in letters if x.awaits_replay] == [0, 1, 3]


def test_records_without_an_origin_are_never_merged() -> None:
    letters = [_letter(0, None), _letter(1, None)]
    mark_copies(letters)
    assert [x.copy_of for x in letters] == [None, None]
