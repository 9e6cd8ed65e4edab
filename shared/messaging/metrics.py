"""Prometheus metrics of the delivery runtime, common to every worker (labelled by service, so several
workers share a process). A service's own metrics live in that service and are named in its spec."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROCESSED = Counter("som_messages_processed_total", "Messages processed", ["service", "topic", "outcome"])
FAILURES = Counter("som_message_failures_total", "Handler failures", ["service", "topic", "error"])
RETRIES = Counter(
    "som_message_retries_total", "Messages sent to or retried from a retry topic", ["service", "topic"]
)
DEAD_LETTERS = Counter("som_dead_letters_total", "Messages dead-lettered", ["service", "topic"])
CONSUMER_LAG = Gauge(
    "som_consumer_lag", "Records behind the partition's high watermark", ["service", "topic", "partition"]
)
HANDLER_SECONDS = Histogram(
    "som_handler_seconds",
    "Handler latency including its transaction",
    ["service", "topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_RECORDS = Histogram(
    "som_batch_records",
    "Records per partition lane transaction",
    ["service"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
PAUSED = Gauge("som_consumer_paused", "1 while consumption waits for a dependency to come back", ["service"])
PAUSED_SECONDS = Counter(
    "som_consumer_paused_seconds_total",
    "Seconds consumption waited for PostgreSQL or the broker",
    ["service"],
)

# Sampled from PostgreSQL and the readiness checks every few seconds by ``shared.messaging.sampler``
# (per-message updates would cost a query each): the dashboards' and alerts' backlog signals.
OUTBOX_BACKLOG = Gauge("som_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_SECONDS = Gauge(
    "som_outbox_oldest_seconds", "Age of the oldest unpublished outbox row (0 when empty)", ["service"]
)
TIMERS_DUE = Gauge(
    "som_timers_due", "Timers due on their clock and not yet fired (scheduler backlog)", ["service"]
)
WORKER_READY = Gauge("som_worker_ready", "1 while every readiness check of the worker passes", ["service"])
