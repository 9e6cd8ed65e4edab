"""The delivery runtime, by concern (this module keeps the names workers and tests import).

- ``incoming``: what a handler sees, routes, inbox keys, runtime headers;
- ``lanes``: a poll's partitions in one transaction, a failing message re-run without;
- ``parking``: per-key order while a message waits in retry, in PostgreSQL;
- ``failures``: retry topic and DLQ routing;
- ``outage``: pausing while PostgreSQL or the broker is unreachable;
- ``worker``: the FastStream wiring, retry consumer, health.
"""

from shared.messaging.incoming import (
    H_ATTEMPT,
    H_DLQ_REASON,
    H_PARKED,
    RUNTIME_HEADERS,
    EventId,
    Handler,
    Incoming,
    Route,
    cloud_event_id,
    content_id,
)
from shared.messaging.worker import Worker, WorkerStatus

__all__ = [
    "H_ATTEMPT",
    "H_DLQ_REASON",
    "H_PARKED",
    "RUNTIME_HEADERS",
    "EventId",
    "Handler",
    "Incoming",
    "Route",
    "Worker",
    "WorkerStatus",
    "cloud_event_id",
    "content_id",
]
