"""Who may do what in the console, password hashing and tokens (pure: no I/O besides hashing)."""

from __future__ import annotations

import hmac
import secrets
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.operators import ROLES

# Roles are ordered: each one may do everything the ones before it may.
RANK: Final[dict[str, int]] = {role: i for i, role in enumerate(ROLES)}

# The least role each action needs. Reading every page needs "viewer".
ACTION_ROLES: Final[dict[str, str]] = {
    "suspend": "operator",
    "reactivate": "operator",
    "cancel": "operator",
    "dlq_replay": "operator",
    "approve": "approver",
    "reject": "approver",
    "dlq_replay_edited": "approver",  # a changed payload is a decision, not a retry
    "terminate": "admin",
    "dlq_replay_force": "admin",
    "console_audit": "admin",
}

_HASHER = PasswordHasher()
# Verified against when the user does not exist, so an unknown name costs the same time as a wrong password.
_DUMMY_HASH: Final[str] = _HASHER.hash(secrets.token_urlsafe(16))


def may(role: str, action: str) -> bool:
    """True when ``role`` may perform ``action`` (unknown roles and actions: never)."""
    needed = ACTION_ROLES.get(action)
    return needed is not None and role in RANK and RANK[role] >= RANK[needed]


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing user still costs one verification."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _HASHER.check_needs_rehash(password_hash)


def new_token() -> str:
    """A random, URL-safe token (session ids, CSRF tokens): 256 bits."""
    return secrets.token_urlsafe(32)


def same_token(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
