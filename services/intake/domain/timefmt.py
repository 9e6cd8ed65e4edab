"""Timestamps and durations in the canonical spelling.

Canonical timestamps are RFC 3339 UTC with exactly three fractional digits
(``YYYY-MM-DDTHH:MM:SS.sssZ``). Finer fractions are truncated, never rounded: rounding
could move an instant into the next second, minute or even billing period.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?$",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_ms(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.sssZ`` of an aware datetime (sub-millisecond digits cut)."""
    utc = moment.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def parse_timestamp(value: str, *, assume_utc: bool) -> datetime:
    """Aware UTC datetime of an ISO 8601 / RFC 3339 string, truncated to milliseconds.

    Accepts any number of fractional digits (Azure sends 7, Shopify 9), ``,`` as the
    decimal sign, and a missing zone designator only when ``assume_utc`` (the vendor
    documents UTC). Raises ``ValueError`` for anything else.
    """
    match = _TIMESTAMP.match(value.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone is None and not assume_utc:
        raise ValueError(f"timestamp without a zone designator: {value!r}")
    millis = int((fraction or "0")[:3].ljust(3, "0"))  # truncate, never round
    if zone is None or zone in ("Z", "z"):
        tz = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or "0")
        if hours > 23 or minutes > 59:
            raise ValueError(f"bad zone offset in {value!r}")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            millis * 1000,
            tzinfo=tz,
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid instant: {value!r}") from exc


def to_rfc3339_ms(value: str, *, assume_utc: bool = False) -> str:
    """Canonical spelling of a timestamp string; see :func:`parse_timestamp`."""
    return format_ms(parse_timestamp(value, assume_utc=assume_utc))


def epoch_to_datetime(seconds: int | Decimal | str) -> datetime:
    """Aware UTC datetime of Unix epoch seconds (Stripe); fractions truncated to ms."""
    try:
        exact = seconds if isinstance(seconds, Decimal) else Decimal(str(seconds).strip())
        if not exact.is_finite():
            raise ValueError(f"not a finite epoch: {seconds!r}")
        millis = int((exact * 1000).to_integral_value(rounding="ROUND_FLOOR"))
        return _EPOCH + timedelta(milliseconds=millis)
    except (InvalidOperation, OverflowError, ArithmeticError) as exc:
        raise ValueError(f"not an epoch timestamp: {seconds!r}") from exc


def epoch_to_rfc3339_ms(seconds: int | Decimal | str) -> str:
    """Canonical spelling of Unix epoch seconds."""
    return format_ms(epoch_to_datetime(seconds))


# ---------------------------------------------------------------------------------------------
# Durations (billing intervals)

# parts capped at 9 digits: int() of a 5000-digit string raises (and no interval is that long)
_DURATION = re.compile(r"^P(?=\d)(?:(\d{1,9})Y)?(?:(\d{1,9})M)?(?:(\d{1,9})W)?(?:(\d{1,9})D)?$", re.ASCII)
_UNITS = {
    "day": "D",
    "days": "D",
    "d": "D",
    "week": "W",
    "weeks": "W",
    "w": "W",
    "month": "M",
    "months": "M",
    "m": "M",
    "year": "Y",
    "years": "Y",
    "y": "Y",
}


def compose_duration(*, years: int = 0, months: int = 0, weeks: int = 0, days: int = 0) -> str | None:
    """ISO 8601 duration with zero parts dropped; whole years of months become years (P12M -> P1Y).

    ``None`` when every part is zero (no interval). Weeks and days are kept as sent
    (``P2W`` and ``P14D`` are both legal channel intervals).
    """
    if min(years, months, weeks, days) < 0:
        raise ValueError("negative duration part")
    years, months = years + months // 12, months % 12
    parts = [(years, "Y"), (months, "M"), (weeks, "W"), (days, "D")]
    text = "".join(f"{n}{unit}" for n, unit in parts if n)
    return f"P{text}" if text else None


def normalize_duration(value: str) -> str | None:
    """Canonical spelling of an ISO 8601 date duration (``p12m`` -> ``P1Y``); ``None`` if it is not one."""
    match = _DURATION.match(value.strip().upper())
    if not match:
        return None
    y, m, w, d = (int(g) if g else 0 for g in match.groups())
    return compose_duration(years=y, months=m, weeks=w, days=d)


def interval_duration(unit: str, count: int) -> str | None:
    """Duration of ``count`` x ``unit`` (Stripe ``month``/1, Shopify ``MONTH``/2); ``None`` if unknown."""
    code = _UNITS.get(unit.strip().lower())
    if code is None or count <= 0:
        return None
    return compose_duration(**{{"Y": "years", "M": "months", "W": "weeks", "D": "days"}[code]: count})
