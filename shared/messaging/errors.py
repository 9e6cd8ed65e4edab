"""Which failures are worth retrying, and which are not the message's fault at all.

Permanent: the input can never succeed (cannot be parsed, breaks the contract) -> DLQ at once.
Outage: a dependency (PostgreSQL, the broker) is unreachable -> the worker pauses consumption and
waits; the message keeps all its retries (only what belongs to a message may use them up).
Transient: anything else that may heal (a vendor timeout, an unknown bug) -> retry topic with
backoff, a bounded number of times, then dead-lettered, so a poison message never crash-loops a
worker.
"""

from __future__ import annotations

import json
from typing import TypeVar

import asyncpg
import pydantic
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError

from shared.contracts.envelope import CloudEvent

M = TypeVar("M", bound=pydantic.BaseModel)


class PermanentError(Exception):
    """The message can never be processed as it is."""

    code = "PERMANENT_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


def payload_of(event: CloudEvent, model: type[M], what: str) -> M:
    """The event's data as ``model``; data that breaks the contract is the message's permanent failure,
    named as ``what`` it is not (for example "a price update")."""
    try:
        return event.payload(model)
    except pydantic.ValidationError as exc:
        raise PermanentError(f"not {what}: {exc.errors()[0]['msg']}") from exc


class UnparseableMessage(PermanentError):
    """The bytes are not the document the topic carries."""

    code = "UNPARSEABLE"


class TransientError(Exception):
    """A failure of this message that may succeed on a later attempt (uses up one retry)."""


# Failures of the connection, not of the statement: the database or the broker is unreachable,
# restarting, refusing connections, or the pool could not hand out a connection in time.
_OUTAGE: tuple[type[BaseException], ...] = (
    ConnectionError,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown (57P*)
    asyncpg.exceptions.InsufficientResourcesError,
)
_BROKER_OUTAGE: tuple[type[BaseException], ...] = (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)
# Two transactions got in each other's way: re-running the work helps, the message is innocent.
_CONTENTION: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.LockNotAvailableError,
)


class DependencyOutage(Exception):
    """A dependency is unreachable; raised by the runtime to pause instead of failing a message."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


def is_outage(exc: BaseException) -> bool:
    """True when the failure is the environment's (database or broker unreachable), not the message's."""
    return isinstance(exc, (DependencyOutage, *_OUTAGE, *_BROKER_OUTAGE))


def is_contention(exc: BaseException) -> bool:
    """True for a serialization failure or deadlock: re-run the work, do not blame the message."""
    return isinstance(exc, _CONTENTION)


_PERMANENT = (PermanentError, pydantic.ValidationError, json.JSONDecodeError, UnicodeDecodeError)


def is_permanent(exc: BaseException) -> bool:
    """True when retrying cannot help."""
    return isinstance(exc, _PERMANENT)
