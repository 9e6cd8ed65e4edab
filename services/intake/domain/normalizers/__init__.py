"""Channel normalizers: one entry point, :func:`normalize`, for every sales channel.

``normalize(channel, body, transport)`` turns a channel's native payload into a
:class:`NormalizedPayload`: a disposition and zero or more canonical changes. It is pure:
no I/O, no clock; everything outside the body comes in through ``transport``.

Generic transport keys (any channel):

* ``headers``: HTTP headers of the delivery (case-insensitive lookup);
* ``last_applied_version``: the channel's ordering number last applied for this
  subscription (Shopify ``revision_id``, Omnistrate ``contractVersion``, Stripe event
  ``created``); a payload with a lower number is dropped as ``drop_stale``;
* ``seen_event_ids``: channel event ids already applied; a repeat is ``drop_duplicate``.

Channel-specific keys are described in each module (STACKIT poll context, Omnistrate
``previous_status``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.intake.domain.errors import UnparseableInput
from services.intake.domain.normalizers import (
    aws_marketplace,
    azure_marketplace,
    cleverbridge,
    direct,
    gcp_marketplace,
    omnistrate,
    shopify,
    stackit_marketplace,
    stripe,
)
from services.intake.domain.normalizers.base import ChannelResult, Context, Normalizer
from services.intake.domain.wire import load_object
from shared.catalog import Catalog
from shared.contracts.canonical import NormalizedPayload

NORMALIZERS: dict[str, Normalizer] = {
    "direct": direct.normalize,
    "azure_marketplace": azure_marketplace.normalize,
    "aws_marketplace": aws_marketplace.normalize,
    "gcp_marketplace": gcp_marketplace.normalize,
    "stripe": stripe.normalize,
    "shopify": shopify.normalize,
    "cleverbridge": cleverbridge.normalize,
    "stackit_marketplace": stackit_marketplace.normalize,
    "omnistrate": omnistrate.normalize,
}

__all__ = ["NORMALIZERS", "normalize", "region_hint"]


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,30}", value.strip(), re.ASCII):
        return int(value.strip())
    return None


def normalize(
    channel: str,
    body: bytes,
    transport: Mapping[str, Any] | None = None,
    *,
    catalog: Catalog | None = None,
) -> NormalizedPayload:
    """What ``body`` received on ``channel`` means in the canonical model.

    Raises :class:`~services.intake.domain.errors.UnparseableInput` when the bytes are not
    a document of the channel (dead-letter), and
    :class:`~services.intake.domain.errors.InvalidOrder` when required fields are missing or
    mistyped (rejection). ``catalog`` prices ``direct`` orders (default: the packaged catalog).
    """
    fn = NORMALIZERS.get(channel)
    if fn is None:
        raise UnparseableInput("UNKNOWN_CHANNEL", f"no normalizer for channel {channel!r}")
    given = transport if isinstance(transport, Mapping) else {}
    context = Context(channel=channel, transport=given, catalog=catalog)
    result = fn(body, context)
    return _disposition(channel, result, context.transport)


def _disposition(channel: str, result: ChannelResult, transport: Mapping[str, Any]) -> NormalizedPayload:
    """Apply the generic drop rules (ignored, duplicate, stale) to a normalizer's result."""
    if result.ignored:
        return NormalizedPayload(channel=channel, disposition="drop_ignored", drop_reason=result.ignored)
    if result.duplicate:
        return NormalizedPayload(channel=channel, disposition="drop_duplicate", drop_reason=result.duplicate)
    last = _as_int(transport.get("last_applied_version"))
    if result.version is not None and last is not None and result.version < last:
        return NormalizedPayload(
            channel=channel,
            disposition="drop_stale",
            drop_reason=f"version {result.version} is older than the last applied version {last}",
        )
    seen = transport.get("seen_event_ids")
    if isinstance(seen, list | tuple | set | frozenset) and result.changes:
        ids = {c.channel_event_id for c in result.changes}
        if None not in ids and ids <= {s for s in seen if isinstance(s, str)}:
            return NormalizedPayload(
                channel=channel,
                disposition="drop_duplicate",
                drop_reason=f"event {', '.join(sorted(i for i in ids if i))} was already applied",
            )
    return NormalizedPayload(channel=channel, disposition="apply", changes=tuple(result.changes))


def region_hint(channel: str, body: bytes, transport: Mapping[str, Any] | None = None) -> str | None:
    """The availability region an order names: ``transport["region"]``, else a direct order's customer.region.

    Never raises; the worker passes the result to ``validate(region=...)``.
    """
    if isinstance(transport, Mapping) and isinstance(transport.get("region"), str):
        return str(transport["region"]).strip() or None
    if channel == "direct":
        try:
            customer = load_object(body).get("customer")
        except UnparseableInput:
            return None  # a hint only: the normalizer reports the real problem
        region = customer.get("region") if isinstance(customer, dict) else None
        return region.strip() or None if isinstance(region, str) else None
    return None
