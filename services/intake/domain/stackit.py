"""Pure snapshot diff for the STACKIT poller (STACKIT has no webhooks).

The poller lists subscriptions, and for each one calls :func:`diff_snapshot` with the
snapshot it stored last time. A :class:`PollPublication` (payload + transport) is returned
when something relevant changed; the poller publishes it to ``orders.inbound.stackit_marketplace``
and stores the new snapshot. :func:`diff_listing` does this for a whole listing.

Plan changes: STACKIT issues a **new** subscription id (the customer cancels the old one to
the end of its term and buys the new plan). A new ``SUBSCRIPTION_PENDING`` subscription is
therefore correlated with a ``SUBSCRIPTION_CANCELLING`` one of the same organization +
project + product; exactly one candidate is required (an ambiguous match is not guessed:
the candidates are listed in the transport for an operator, and the order stays a create).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.intake.domain.normalizers.stackit_marketplace import CANCELLING, PENDING, state_name

# fields whose change is worth publishing; anything else (names, URLs) is noise
_RELEVANT: tuple[tuple[str, ...], ...] = (
    ("lifecycleState",),
    ("validFrom",),
    ("validUntil",),
    ("terminatesAt",),
    ("autoRenewal",),
    ("product", "productId"),
    ("product", "planId"),
    ("product", "rate"),
    ("product", "priceType"),
    ("product", "validityPeriod"),
)


@dataclass(frozen=True)
class PollPublication:
    """What the poller publishes for one subscription: the body, its transport and the record key."""

    subscription_id: str | None
    payload: bytes
    transport: dict[str, Any]

    def headers(self) -> dict[str, str]:
        """The transport as message headers (``poll.<key>`` = JSON), see :func:`transport_headers`."""
        return transport_headers(self.transport)


def _get(doc: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = doc
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _text(doc: Mapping[str, Any], *path: str) -> str | None:
    value = _get(doc, path)
    return value.strip() if isinstance(value, str) and value.strip() else None


def changed(previous: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """True when a relevant field differs between two snapshots of one subscription."""
    return any(_get(previous, path) != _get(current, path) for path in _RELEVANT)


def _correlation_key(sub: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    return _text(sub, "organizationId"), _text(sub, "projectId"), _text(sub, "product", "productId")


def replaced_candidates(
    current: Mapping[str, Any], others: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """CANCELLING subscriptions that a new PENDING ``current`` may replace (same org/project/product)."""
    if state_name(current.get("lifecycleState")) != PENDING:
        return []
    key = _correlation_key(current)
    if None in key:
        return []
    own_id = _text(current, "subscriptionId")
    found: dict[str, Mapping[str, Any]] = {}
    for other in others:
        other_id = _text(other, "subscriptionId")
        if (
            isinstance(other, Mapping)
            and other_id
            and other_id != own_id
            and state_name(other.get("lifecycleState")) == CANCELLING
            and _correlation_key(other) == key
        ):
            found[other_id] = other  # the same subscription may be both stored and listed
    return list(found.values())


def diff_snapshot(
    previous: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    *,
    others: Iterable[Mapping[str, Any]] = (),
    poll: str | None = None,
) -> PollPublication | None:
    """The publication for ``current`` given its stored ``previous`` snapshot; ``None`` if nothing changed.

    ``others`` are the other subscriptions known to the poller (stored snapshots and the
    current listing), searched for the CANCELLING subscription a new PENDING one replaces.
    ``poll`` describes the request (kept in the transport for audit).
    """
    if previous is not None and not changed(previous, current):
        return None
    transport: dict[str, Any] = {}
    if poll is not None:
        transport["poll"] = poll
    transport["previous_snapshot_lifecycleState"] = (
        state_name(previous.get("lifecycleState")) if previous is not None else None
    )
    if previous is not None and _text(previous, "validUntil"):
        transport["previous_snapshot_validUntil"] = _text(previous, "validUntil")
    if previous is not None and isinstance(previous.get("autoRenewal"), bool):
        transport["previous_snapshot_autoRenewal"] = previous["autoRenewal"]
    if previous is None:
        candidates = replaced_candidates(current, others)
        if len(candidates) == 1:
            old = candidates[0]
            transport["replaces_subscription"] = {
                "subscriptionId": _text(old, "subscriptionId"),
                "terminatesAt": _text(old, "terminatesAt") or _text(old, "validUntil"),
            }
        elif candidates:
            transport["replaces_candidates"] = sorted(str(_text(c, "subscriptionId")) for c in candidates)
    return PollPublication(
        subscription_id=_text(current, "subscriptionId"),
        payload=json.dumps(current, sort_keys=True, default=str).encode(),
        transport=transport,
    )


def diff_listing(
    stored: Mapping[str, Mapping[str, Any]],
    listing: Iterable[Mapping[str, Any]],
    *,
    poll: str | None = None,
) -> list[PollPublication]:
    """Publications for one poll: every listed subscription that is new or changed.

    ``stored`` maps subscription id -> last stored snapshot. Correlation looks at the
    current listing first (a CANCELLING state seen in this very poll counts) and then at
    stored snapshots of subscriptions no longer listed.
    """
    current = [s for s in listing if isinstance(s, Mapping)]
    listed_ids = {_text(s, "subscriptionId") for s in current}
    known = current + [s for sid, s in stored.items() if sid not in listed_ids]
    out: list[PollPublication] = []
    for sub in current:
        sid = _text(sub, "subscriptionId")
        publication = diff_snapshot(stored.get(sid) if sid else None, sub, others=known, poll=poll)
        if publication is not None:
            out.append(publication)
    return out


def transport_headers(transport: Mapping[str, Any]) -> dict[str, str]:
    """Transport as ``poll.<key>`` headers with JSON values (what the intake worker decodes)."""
    return {f"poll.{key}": json.dumps(value, sort_keys=True, default=str) for key, value in transport.items()}
