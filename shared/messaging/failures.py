"""Where a failed message goes: the group's retry topic (with a not-before time) or its DLQ.

Records keep their original bytes, key and headers and gain string headers saying where they
came from and why they failed. Sends are awaited before the offsets are committed; if the broker
cannot take them, the caller pauses and the batch is processed again later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from shared.messaging import metrics
from shared.messaging.errors import is_permanent
from shared.messaging.incoming import (
    H_ATTEMPT,
    H_DLQ_REASON,
    H_EXC_MESSAGE,
    H_EXC_TYPE,
    H_FIRST_FAILURE,
    H_GROUP,
    H_LAST_FAILURE,
    H_NOT_BEFORE,
    H_ORIG_OFFSET,
    H_ORIG_PARTITION,
    H_ORIG_TIMESTAMP,
    H_ORIG_TOPIC,
    H_PARKED,
    Incoming,
    now_iso,
)
from shared.messaging.topics import dlq_topic, retry_topic

log = logging.getLogger("som.runtime")


@dataclass(frozen=True)
class Failure:
    """A message that leaves the main flow: ``exc`` None means parked behind an earlier one."""

    incoming: Incoming
    exc: Exception | None

    def to_dlq(self, *, exhausted: bool = False) -> bool:
        """DLQ for input that can never succeed, or when its retries are used up; else the retry topic."""
        return self.exc is not None and (exhausted or is_permanent(self.exc))


class FailureRouter:
    """Sends failed and parked messages of one worker to its retry topics and DLQs."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        worker: str,
        group: str,
        namespace: str,
        backoff: tuple[float, ...],
        send_timeout: float = 30.0,
    ) -> None:
        self.producer = producer
        self.worker = worker
        self.group = group
        self.namespace = namespace
        self.backoff_steps = backoff or (1.0,)
        self.send_timeout = send_timeout

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        steps = self.backoff_steps
        return steps[min(max(attempt - 1, 0), len(steps) - 1)]

    def headers(self, incoming: Incoming, exc: Exception | None) -> dict[str, str]:
        """The original headers plus where the record came from and why it failed."""
        now = now_iso()
        h = dict(incoming.headers)
        h.update(
            {
                H_ORIG_TOPIC: f"{self.namespace}{incoming.topic}",
                H_ORIG_PARTITION: str(incoming.partition),
                H_ORIG_OFFSET: str(incoming.offset),
                H_ORIG_TIMESTAMP: str(incoming.timestamp_ms),
                H_GROUP: self.group,
                H_ATTEMPT: str(incoming.attempt),
            }
        )
        if exc is not None:
            h[H_EXC_TYPE] = f"{type(exc).__module__}.{type(exc).__qualname__}"
            h[H_EXC_MESSAGE] = str(exc)[:1000]
            h[H_FIRST_FAILURE] = incoming.first_failure_at or now
            h[H_LAST_FAILURE] = now
        return h

    async def send_all(self, failures: list[Failure]) -> None:
        """Route every failure (pipelined); raises if the broker does not take them all."""
        if not failures:
            return
        futures = [await self._enqueue(f) for f in failures]
        async with asyncio.timeout(self.send_timeout):
            await asyncio.gather(*futures)
        for f in failures:
            self._count(f)

    async def dead_letter(self, incoming: Incoming, exc: Exception) -> None:
        """Send one message to the DLQ now (retries exhausted in the retry consumer)."""
        fut = await self._enqueue(Failure(incoming, exc), exhausted=True)
        async with asyncio.timeout(self.send_timeout):
            await fut
        self._count(Failure(incoming, exc), exhausted=True)

    async def _enqueue(self, failure: Failure, *, exhausted: bool = False) -> asyncio.Future[object]:
        incoming, exc = failure.incoming, failure.exc
        headers = self.headers(incoming, exc)
        main = f"{self.namespace}{incoming.topic}"
        if exc is not None and failure.to_dlq(exhausted=exhausted):
            headers[H_DLQ_REASON] = "permanent" if is_permanent(exc) else "retries_exhausted"
            topic = dlq_topic(main, self.group)
        else:
            topic = retry_topic(main, self.group)
            if exc is None:  # parked: not failed yet, its first attempt is still due
                headers[H_ATTEMPT] = str(incoming.attempt - 1)
                headers[H_PARKED] = "1"
                headers[H_NOT_BEFORE] = "0"
            else:
                headers[H_NOT_BEFORE] = str(int((time.time() + self.backoff(incoming.attempt)) * 1000))
        fut: asyncio.Future[object] = await self.producer.send(
            topic,
            value=incoming.value,
            key=incoming.key.encode() if incoming.key is not None else None,
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
        return fut

    def _count(self, failure: Failure, *, exhausted: bool = False) -> None:
        incoming, exc = failure.incoming, failure.exc
        if exc is not None and failure.to_dlq(exhausted=exhausted):
            metrics.DEAD_LETTERS.labels(self.worker, incoming.topic).inc()
            log.error(
                "dead-lettered %s[%d]@%d after %d attempt(s): %s: %s",
                incoming.topic,
                incoming.partition,
                incoming.offset,
                incoming.attempt,
                type(exc).__name__,
                exc,
            )
        elif exc is not None:
            metrics.RETRIES.labels(self.worker, incoming.topic).inc()
            log.warning("failure on %s (%s: %s): to retry", incoming.topic, type(exc).__name__, exc)
