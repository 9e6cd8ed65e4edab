"""Which partitions a fetch names: the active ones every time, the quiet ones once per sweep."""

from __future__ import annotations

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from shared.messaging.fetch_focus import FetchFocus

P0, P1, P2 = (TopicPartition("orders.inbound.direct", p) for p in range(3))


def _names(chosen: list[tuple[TopicPartition, int, int]]) -> set[int]:
    return {tp.partition for tp, _, _ in chosen}


def test_new_partitions_are_fetched_and_quiet_ones_wait_for_the_sweep() -> None:
    focus = FetchFocus(quiet_after=1.0, sweep_every=0.1)
    parts = [(P0, 10, 1), (P1, 20, 1), (P2, 30, 1)]
    chosen, wake = focus.choose(parts, now=100.0)
    assert _names(chosen) == {0, 1, 2} and wake is None  # first seen: active

    # 1.05 s later only P0 has moved; the sweep is due, so all three are named once more.
    chosen, wake = focus.choose([(P0, 15, 1), (P1, 20, 1), (P2, 30, 1)], now=101.05)
    assert _names(chosen) == {0, 1, 2}
    # 20 ms later: the quiet partitions wait for the next sweep (80 ms away), the active one goes.
    chosen, wake = focus.choose([(P0, 17, 1), (P1, 20, 1), (P2, 30, 1)], now=101.07)
    assert _names(chosen) == {0}
    assert wake is not None and abs(wake - 0.08) < 1e-9
    # P1's records were taken (its offset moved since the last call): active again at once.
    chosen, _ = focus.choose([(P0, 17, 1), (P1, 21, 1), (P2, 30, 1)], now=101.08)
    assert _names(chosen) == {0, 1}
    # The sweep: every partition, and the next one scheduled.
    chosen, wake = focus.choose([(P0, 17, 1), (P1, 21, 1), (P2, 30, 1)], now=101.16)
    assert _names(chosen) == {0, 1, 2} and wake is None


def test_nothing_held_back_means_no_wake_up() -> None:
    focus = FetchFocus(quiet_after=1.0, sweep_every=0.1)
    assert focus.choose([(P0, 1, 1)], now=5.0) == ([(P0, 1, 1)], None)
    assert focus.choose([], now=5.01) == ([], None)


@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0.001, max_value=0.3), st.sets(st.integers(0, 2))),
        min_size=1,
        max_size=60,
    ),
    quiet_after=st.floats(min_value=0.01, max_value=2.0),
    sweep_every=st.floats(min_value=0.01, max_value=1.0),
)
def test_a_partition_is_never_left_out_longer_than_a_sweep(
    steps: list[tuple[float, set[int]]], quiet_after: float, sweep_every: float
) -> None:
    """Whatever the traffic: a partition whose records were just taken is named, and no
    partition goes unnamed for longer than one sweep interval plus the gap between fetches."""
    focus = FetchFocus(quiet_after=quiet_after, sweep_every=sweep_every)
    offsets = {0: 0, 1: 0, 2: 0}
    tps = {0: P0, 1: P1, 2: P2}
    now = 0.0
    last_named = {p: now for p in offsets}
    focus.choose([(tps[p], offsets[p], 1) for p in offsets], now)
    for gap, moved in steps:
        now += gap
        for p in moved:
            offsets[p] += 1
        chosen, wake = focus.choose([(tps[p], offsets[p], 1) for p in offsets], now)
        named = _names(chosen)
        assert moved <= named
        for p in offsets:
            if p in named:
                last_named[p] = now
            assert now - last_named[p] <= sweep_every + 1e-9
        assert (wake is None) == (named == set(offsets))


def test_a_fetcher_laid_out_otherwise_is_left_alone() -> None:
    """An aiokafka whose fetcher lacks the settings a narrower request is built from: no focus."""
    from types import SimpleNamespace

    from shared.messaging.fetch_focus import focus_fetches

    def build(assignment: object) -> tuple[object, ...]:
        return [], {}, 0.2, False, []

    fetcher = SimpleNamespace(_get_actions_per_node=build, _fetch_max_wait_ms=100)
    consumer = SimpleNamespace(_fetcher=fetcher)
    assert focus_fetches(consumer, quiet_after=1.0, sweep_every=0.1) is False  # type: ignore[arg-type]
    assert fetcher._get_actions_per_node is build
