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
# Broker timestamp of the lifecycle's change record to the moment this worker handles it: how far
# entitlements trail the subscription's state. The outbox relay's own delay after the commit is
# in som_outbox_oldest_seconds.
SYNC_LAG = Gauge(
    "som_entitlement_sync_lag_seconds",
    "Seconds from a subscription change reaching the broker to its entitlements being derived",
)
ALL = (UNACKNOWLEDGED, ACK_LAG_SECONDS, REPUBLISHED, VIOLATIONS, SYNC_LAG)
