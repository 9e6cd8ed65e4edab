"""What a handler sees of a consumed record, and how a route names its inbox key."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from shared.contracts.envelope import CloudEvent
from shared.db.uow import UnitOfWork
from shared.messaging.errors import UnparseableMessage

H_ATTEMPT = "x-retry-attempt"
H_NOT_BEFORE = "x-retry-not-before"
H_PARKED = "x-parked"
H_ORIG_TOPIC = "x-original-topic"
H_ORIG_PARTITION = "x-original-partition"
H_ORIG_OFFSET = "x-original-offset"
H_ORIG_TIMESTAMP = "x-original-timestamp"
H_GROUP = "x-consumer-group"
H_EXC_TYPE = "x-exception-type"
H_EXC_MESSAGE = "x-exception-message"
H_FIRST_FAILURE = "x-first-failure-at"
H_LAST_FAILURE = "x-last-failure-at"
H_DLQ_REASON = "x-dlq-reason"
RUNTIME_HEADERS = frozenset(
    {
        H_ATTEMPT,
        H_NOT_BEFORE,
        H_PARKED,
        H_ORIG_TOPIC,
        H_ORIG_PARTITION,
        H_ORIG_OFFSET,
        H_ORIG_TIMESTAMP,
        H_GROUP,
        H_EXC_TYPE,
        H_EXC_MESSAGE,
        H_FIRST_FAILURE,
        H_LAST_FAILURE,
        H_DLQ_REASON,
    }
)


def failure_origin(headers: Mapping[str, str]) -> str | None:
    """The failed message a retry or dead-letter record is a copy of: consumer group, original
    topic, partition and offset; None when the headers do not say.

    Sends to retry topics and DLQs are at-least-once (a worker killed between the send and its
    offset commit sends again), so two records with one origin are copies of one failure.
    """
    parts = (headers.get(H_GROUP), headers.get(H_ORIG_TOPIC), headers.get(H_ORIG_PARTITION))
    offset = headers.get(H_ORIG_OFFSET)
    if not all(parts) or not offset:
        return None
    return f"{parts[0]}|{parts[1]}/{parts[2]}/{offset}"


def now_iso() -> str:
    """The wall clock as RFC 3339 UTC with milliseconds (failure headers)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Incoming:
    """A consumed record as a handler sees it, with its original coordinates."""

    topic: str  # logical topic, without the namespace
    key: str | None
    value: bytes
    headers: dict[str, str]
    partition: int
    offset: int
    timestamp_ms: int
    attempt: int = 1
    first_failure_at: str | None = None

    def cloud_event(self) -> CloudEvent:
        """The record parsed as a CloudEvent; an unparseable one is a permanent failure."""
        try:
            return CloudEvent.model_validate_json(self.value)
        except ValidationError as exc:
            raise UnparseableMessage(f"not a CloudEvent: {exc.errors()[0]['msg']}") from exc

    @classmethod
    def from_record(cls, topic: str, rec: ConsumerRecord) -> Incoming:
        """A Kafka record under its logical topic name."""
        headers = {k: (v.decode("utf-8", "replace") if v is not None else "") for k, v in rec.headers}
        return cls(
            topic=topic,
            key=rec.key.decode("utf-8", "replace") if rec.key is not None else None,
            value=rec.value or b"",
            headers=headers,
            partition=rec.partition,
            offset=rec.offset,
            timestamp_ms=rec.timestamp,
        )


Handler = Callable[[Incoming, UnitOfWork], Awaitable[None]]
EventId = Callable[[Incoming], str]


def cloud_event_id(incoming: Incoming) -> str:
    """Inbox key of a CloudEvent: its ``id`` (the ``ce_id`` header saves parsing twice)."""
    return incoming.headers.get("ce_id") or incoming.cloud_event().id


def content_id(incoming: Incoming) -> str:
    """Inbox key of a foreign payload: a hash of topic and bytes, so a redelivery is recognised."""
    return hashlib.sha256(incoming.topic.encode() + b"\0" + incoming.value).hexdigest()


@dataclass(frozen=True)
class Route:
    """A topic this worker consumes and the handler for it."""

    topic: str
    handler: Handler
    event_id: EventId = cloud_event_id
    # A message the handler would leave untouched (decided from the record alone, the same on every
    # delivery): its offset is committed with no transaction and no inbox row. Saves a consumer
    # the whole per-message cost of a topic it subscribes to for a feature that is switched off.
    skips: Callable[[Incoming], bool] | None = None
