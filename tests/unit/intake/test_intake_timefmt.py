"""Timestamps (truncated to ms, UTC) and billing-interval durations."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.domain.timefmt import (
    compose_duration,
    epoch_to_rfc3339_ms,
    interval_duration,
    normalize_duration,
    to_rfc3339_ms,
)


@pytest.mark.parametrize(
    ("raw", "assume_utc", "canonical"),
    [
        ("2023-02-10T18:48:58.4449937Z", False, "2023-02-10T18:48:58.444Z"),  # Azure: 7 digits, truncated
        ("2025-06-03T15:42:10.118203445Z", False, "2025-06-03T15:42:10.118Z"),  # Shopify: nanoseconds
        ("2025-02-10T09:31:07.999999", True, "2025-02-10T09:31:07.999Z"),  # never rounds up to :08
        ("2018-12-01T00:00:00", True, "2018-12-01T00:00:00.000Z"),  # no zone, vendor documents UTC
        ("2025-03-01T09:30:00.25+01:00", False, "2025-03-01T08:30:00.250Z"),
        ("2025-03-01T00:30:00-0230", False, "2025-03-01T03:00:00.000Z"),
        ("2025-09-15T07:45:12.25Z", False, "2025-09-15T07:45:12.250Z"),
        ("2025-08-30T12:00:00z", False, "2025-08-30T12:00:00.000Z"),
        ("2025-03-14", True, "2025-03-14T00:00:00.000Z"),
        ("2025-03-14 10:11:12,5Z", False, "2025-03-14T10:11:12.500Z"),
        ("  2025-03-14T10:11:12Z ", False, "2025-03-14T10:11:12.000Z"),
    ],
)
def test_timestamps_are_truncated_to_ms_in_utc(raw: str, assume_utc: bool, canonical: str) -> None:
    assert to_rfc3339_ms(raw, assume_utc=assume_utc) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "2018-12-01T00:00:00",
        "2025-13-01T00:00:00Z",
        "2025-02-30T00:00:00Z",
        "yesterday",
        "",
        "2025-01-01T25:00:00Z",
        "2025-01-01T00:00:00+24:00",
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_bad_or_zone_less_timestamps_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        to_rfc3339_ms(raw, assume_utc=False)


def test_epoch_seconds() -> None:
    assert epoch_to_rfc3339_ms(1741962905) == "2025-03-14T14:35:05.000Z"
    assert epoch_to_rfc3339_ms("1741962905") == "2025-03-14T14:35:05.000Z"
    assert epoch_to_rfc3339_ms(Decimal("1741962905.9999")) == "2025-03-14T14:35:05.999Z"
    with pytest.raises(ValueError):
        epoch_to_rfc3339_ms(10**20)
    with pytest.raises(ValueError):
        epoch_to_rfc3339_ms("soon")


@given(st.datetimes(timezones=st.timezones()))
def test_any_aware_instant_round_trips_to_its_utc_millisecond(moment: object) -> None:
    from datetime import UTC, datetime

    assert isinstance(moment, datetime)
    utc = moment.astimezone(UTC)
    offset = moment.utcoffset()
    if not 1 <= utc.year <= 9999 or offset is None or offset.total_seconds() % 60:
        return  # RFC 3339 offsets are whole minutes (historic LMT offsets are not)
    text = moment.isoformat()
    expected = utc.replace(microsecond=utc.microsecond // 1000 * 1000)
    got = datetime.fromisoformat(to_rfc3339_ms(text).replace("Z", "+00:00"))
    assert got == expected


@pytest.mark.parametrize(
    ("unit", "count", "duration"),
    [
        ("month", 1, "P1M"),
        ("MONTH", 2, "P2M"),
        ("year", 1, "P1Y"),
        ("week", 2, "P2W"),
        ("day", 14, "P14D"),
        ("month", 12, "P1Y"),
        ("month", 18, "P1Y6M"),
        ("fortnight", 1, None),
        ("month", 0, None),
    ],
)
def test_interval_durations(unit: str, count: int, duration: str | None) -> None:
    assert interval_duration(unit, count) == duration


def test_duration_normalization() -> None:
    assert normalize_duration("p1m") == "P1M"
    assert normalize_duration(" P12M ") == "P1Y"
    assert normalize_duration("P1Y") == "P1Y"
    assert normalize_duration("P") is None
    assert normalize_duration("monthly") is None
    assert compose_duration(months=12, days=0) == "P1Y"
    assert compose_duration(months=1, days=15) == "P1M15D"
    assert compose_duration() is None
