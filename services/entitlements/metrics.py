"""Prometheus metrics of the entitlements worker (the delivery runtime's own are in shared.messaging.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

UNACKNOWLEDGED = Gauge(
    "som_entitlements_unacknowledged",
    "Entitlement changes and instructions provisioning has not acknowledged",
    ["kind"],
)
ACK_LAG_SECONDS = Gauge(
    "som_entitlements_ack_lag_seconds",
    "Age of the oldest entitlement change provisioning has not acknowledged",
)
REPUBLISHED = Counter(
    "som_entitlements_republished_total", "Unacknowledged changes and instructions published again", ["kind"]
)
VIOLATIONS = Counter("som_entitlements_violations_total", "More instances running than allowed")
ALL = (UNACKNOWLEDGED, ACK_LAG_SECONDS, REPUBLISHED, VIOLATIONS)
