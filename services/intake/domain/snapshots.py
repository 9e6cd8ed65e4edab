"""Snapshots mapped by what the receiver already knows (FORMATS.md 8a rule 9). Pure.

A snapshot (a polled object, a GET/resolve answer, a lookup response) says what a
subscription *is*, not what happened to it. What it means depends on what the receiver knew:

* not seen before -> ``create`` (phase ``effective``; ``requested`` while the snapshot is
  still pending at the vendor, who awaits approval);
* seen before as pending, now active or trialing -> ``activate``;
* seen before otherwise -> ``refresh``.

What the receiver knows comes in the transport: ``known_subscription`` is set by the intake
worker from its own records (``null``: never seen; ``{"status": <status_after or null>}``:
seen, with the last status it recorded). A stateless caller may pass the channel's previous
state instead (STACKIT ``previous_snapshot_lifecycleState``, Omnistrate ``previous_status``);
each normalizer turns that into a :class:`Known`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.contracts.canonical import Action, Phase, StatusAfter

KNOWN_KEY = "known_subscription"
_ACTIVE: frozenset[str] = frozenset({"active", "trialing"})


@dataclass(frozen=True)
class Known:
    """What the receiver knows of a subscription: ``seen`` at all, and its last known status."""

    seen: bool
    status: str | None = None


NOT_SEEN = Known(seen=False)


def known_from_transport(transport: Mapping[str, Any]) -> Known | None:
    """The receiver's knowledge from ``transport["known_subscription"]``; ``None`` when not given."""
    if KNOWN_KEY not in transport:
        return None
    value = transport[KNOWN_KEY]
    if value is None or value is False:
        return NOT_SEEN
    if isinstance(value, Mapping):
        status = value.get("status")
        return Known(seen=True, status=status.strip().lower() if isinstance(status, str) else None)
    if isinstance(value, str):  # a bare status is accepted from hand-written transports
        return Known(seen=True, status=value.strip().lower() or None)
    return Known(seen=True)


def snapshot_step(status: StatusAfter | None, known: Known) -> tuple[Action, Phase]:
    """(action, phase) of a snapshot whose status is ``status``, given what the receiver knows."""
    if not known.seen:
        return ("create", "requested") if status == "pending" else ("create", "effective")
    if known.status == "pending" and status in _ACTIVE:
        return "activate", "effective"
    return "refresh", "effective"
