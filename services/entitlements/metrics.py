"""Prometheus metrics of the entitlements worker (the delivery runtime's own are in shared.messaging.metrics)."""

from __future__ import annotations

from prometheus_client import Gauge

# Broker timestamp of the lifecycle's change record to the moment this worker handles it: how far
# entitlements trail the subscription's state. The outbox relay's own delay after the commit is
# in som_outbox_oldest_seconds.
SYNC_LAG = Gauge(
    "som_entitlement_sync_lag_seconds",
    "Seconds from a subscription change reaching the broker to its entitlements being derived",
)

ALL = (SYNC_LAG,)
