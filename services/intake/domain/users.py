"""The people a channel names for a subscription, and the role each gets (docs/intake.md, "Users").

Roles, strongest first: owner, admin, editor, reader. The decisions:

* the ordering customer (the canonical customer's email) is the ``owner``, as entitlements has always
  recorded it;
* Azure: the ``beneficiary`` is the customer (the tenant the SaaS serves): ``owner``; the ``purchaser``
  bought it and manages billing and seats, inside the beneficiary's tenant: ``admin``;
* Omnistrate: the subscription's root user (``rootUserEmail``) is the customer: ``owner``; its
  ``syntheticEmail`` is not deliverable and names nobody;
* a person named twice keeps the strongest role.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.contracts.canonical import CanonicalOrderChange, CanonicalUser

RANK = {"owner": 0, "admin": 1, "editor": 2, "reader": 3}


def named(email: str | None, role: str, source: str) -> CanonicalUser | None:
    """A user for ``email`` (trimmed, lower case), or ``None`` when it is not an address."""
    address = (email or "").strip().lower()
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        return None
    return CanonicalUser(email=address, role=role, source=source)  # type: ignore[arg-type]


def merged(users: Iterable[CanonicalUser | None]) -> tuple[CanonicalUser, ...]:
    """One entry per email, the strongest role winning; first-named order kept."""
    found: dict[str, CanonicalUser] = {}
    for user in users:
        if user is None:
            continue
        known = found.get(user.email)
        if known is None or RANK[user.role] < RANK[known.role]:
            found[user.email] = user
    return tuple(found.values())


def subscription_users(change: CanonicalOrderChange) -> tuple[CanonicalUser, ...]:
    """Everyone the change names: the ordering customer (``owner``) and the channel's own users."""
    return merged([named(change.customer.email, "owner", "customer"), *change.users])
