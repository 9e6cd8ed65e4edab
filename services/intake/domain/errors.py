"""The two ways a channel payload can fail to normalize.

* :class:`UnparseableInput`: the bytes are not a document of the channel at all (not JSON,
  not an object, an unknown shape or event type). Nothing can be said about the order, so
  the worker dead-letters it for a human.
* :class:`InvalidOrder`: the document is recognisably the channel's, but required fields
  are missing or have the wrong type. It becomes a rejection with machine-readable reasons.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.contracts.canonical import RejectionReason


class UnparseableInput(Exception):
    """The payload cannot be parsed into any known document of the channel."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


class InvalidOrder(Exception):
    """The payload parses but misses required fields or carries wrong types."""

    def __init__(self, reasons: Iterable[RejectionReason]) -> None:
        self.reasons: list[RejectionReason] = list(reasons)
        if not self.reasons:  # an InvalidOrder without a reason would be unexplainable downstream
            self.reasons = [RejectionReason(code="INVALID_ORDER", message="invalid order")]
        super().__init__("; ".join(f"{r.code} {r.field or ''}: {r.message}".strip() for r in self.reasons))


def reason(code: str, message: str, field: str | None = None) -> RejectionReason:
    """Shorthand for a :class:`RejectionReason`."""
    return RejectionReason(code=code, field=field, message=message)
