"""Counted limits: counting periods and thresholds raised once per period."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.entitlements.domain.usage import THRESHOLDS, crossed, period_start


def test_daily_features_count_per_utc_day_and_monthly_ones_per_billing_period() -> None:
    late = datetime(2025, 3, 14, 23, 30, tzinfo=UTC)
    assert period_start("P1D", late, date(2025, 3, 10)) == date(2025, 3, 14)
    assert period_start("P1M", late, date(2025, 3, 10)) == date(2025, 3, 10)  # resets at renewal
    assert period_start("P1M", late, None) == date(2025, 3, 1)


def test_eighty_then_hundred_each_once() -> None:
    assert crossed(79, 100, frozenset()) == []
    assert crossed(80, 100, frozenset()) == [80]
    assert crossed(99, 100, frozenset({80})) == []
    assert crossed(150, 100, frozenset({80})) == [100]
    assert crossed(200, 100, frozenset({80, 100})) == []
    assert crossed(1, 0, frozenset()) == [80, 100]  # no allowance: any use is over it
    assert crossed(0, 0, frozenset()) == []


@given(
    st.integers(min_value=1, max_value=10_000),
    st.lists(st.integers(min_value=0, max_value=3_000), max_size=30),
)
def test_each_threshold_is_raised_once_and_when_the_running_total_reaches_it(
    limit: int, reports: list[int]
) -> None:
    raised: list[tuple[int, int]] = []  # (threshold, total when raised)
    used = 0
    for q in reports:
        used += q
        new = crossed(used, limit, frozenset(t for t, _ in raised))
        raised += [(t, used) for t in new]
    assert len({t for t, _ in raised}) == len(raised)  # never twice
    for t in THRESHOLDS:
        reached = used * 100 >= limit * t
        assert (t in {x for x, _ in raised}) == reached
    for t, total in raised:
        assert total * 100 >= limit * t
