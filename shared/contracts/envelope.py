"""CloudEvents 1.0 structured JSON envelope for every event the project publishes.

Event ids are derived deterministically from the event that caused them, so a
handler that runs twice (after a crash, before its inbox row committed) produces
the same ids and downstream inboxes drop the second copy.
"""

from __future__ import annotations

import builtins
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

_ID_NAMESPACE = uuid.UUID("6f1d7c2e-2b1a-4a7e-9d2f-5c1e8b3a9d40")
_ID_NAMESPACE_BYTES = _ID_NAMESPACE.bytes

T = TypeVar("T", bound=BaseModel)


def derived_id(*parts: str) -> str:
    """A stable event id from the parts that identify it (cause id, type, discriminator).

    The RFC 4122 name-based (SHA-1, version 5) UUID of the joined parts, as ``uuid.uuid5`` makes
    it, formatted without building a ``UUID`` object (several ids per message: it shows in profiles).
    """
    digest = bytearray(hashlib.sha1(_ID_NAMESPACE_BYTES + "|".join(parts).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class CloudEvent(BaseModel):
    """CloudEvents 1.0 with ``correlationid`` and ``causationid`` extension attributes."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    subject: str | None = Field(default=None, description="the subscription id")
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    correlationid: str
    causationid: str | None = None
    data: dict[str, Any]

    def payload(self, model: builtins.type[T]) -> T:
        """The ``data`` member validated as ``model``."""
        return model.model_validate(self.data)


def schema_uri(model: type[BaseModel]) -> str:
    """``dataschema`` URI of a contract: the JSON Schema file generated into ``schemas/``."""
    return f"urn:som:schemas:{model.__name__}"


def make_event(
    *,
    type: str,
    source: str,
    subject: str | None,
    data: BaseModel,
    correlation_id: str,
    causation_id: str | None,
    discriminator: str = "",
    time: datetime | None = None,
) -> CloudEvent:
    """Build an event whose id is derived from its cause, type, subject and discriminator.

    Built without validation: every field comes typed from this signature and ``data`` from a
    validated model's own JSON form, so validating would only copy the data again (several events
    per message; it shows in profiles). Readers still validate what they consume.
    """
    return CloudEvent.model_construct(
        id=derived_id(causation_id or correlation_id, type, subject or "", discriminator),
        source=source,
        type=type,
        subject=subject,
        time=time or datetime.now(UTC),
        dataschema=schema_uri(data.__class__),
        correlationid=correlation_id,
        causationid=causation_id,
        data=data.model_dump(mode="json"),
    )


def caused_by(
    cause: CloudEvent,
    *,
    type: str,
    source: str,
    subject: str | None,
    data: BaseModel,
    discriminator: str = "",
    time: datetime | None = None,
) -> CloudEvent:
    """An event caused by ``cause``: same correlation id, ``cause`` as causation, id derived from it."""
    return make_event(
        type=type,
        source=source,
        subject=subject,
        data=data,
        correlation_id=cause.correlationid,
        causation_id=cause.id,
        discriminator=discriminator,
        time=time,
    )
