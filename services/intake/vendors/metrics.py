"""Metrics of the outbound vendor calls (named in the intake spec)."""

from __future__ import annotations

from prometheus_client import Counter

VENDOR_CALLS = Counter(
    "som_vendor_calls_total", "Outbound vendor calls by outcome", ["channel", "action", "outcome"]
)
DEADLINES_MISSED = Counter(
    "som_vendor_deadlines_missed_total",
    "Vendor calls not made before the vendor's deadline",
    ["channel", "action"],
)
ALL = (VENDOR_CALLS, DEADLINES_MISSED)
