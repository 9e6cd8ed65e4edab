"""Which failures are worth retrying.

Permanent: the input can never succeed (cannot be parsed, breaks the contract) -> DLQ at once.
Transient: the world may heal (database down, timeout, broker hiccup) -> retry with backoff.
Anything unknown (a bug) is retried a bounded number of times and then dead-lettered,
so a poison message never crash-loops a worker.
"""

from __future__ import annotations

import json

import asyncpg
import pydantic


class PermanentError(Exception):
    """The message can never be processed as it is."""

    code = "PERMANENT_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class UnparseableMessage(PermanentError):
    """The bytes are not the document the topic carries."""

    code = "UNPARSEABLE"


class TransientError(Exception):
    """A failure that may succeed on a later attempt."""


_TRANSIENT = (
    TransientError,
    ConnectionError,
    TimeoutError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
)

_PERMANENT = (PermanentError, pydantic.ValidationError, json.JSONDecodeError, UnicodeDecodeError)


def is_permanent(exc: BaseException) -> bool:
    """True when retrying cannot help."""
    return isinstance(exc, _PERMANENT)


def is_transient(exc: BaseException) -> bool:
    """True for failures of the environment rather than of the message."""
    return isinstance(exc, _TRANSIENT)
