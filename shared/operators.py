"""The operator console's own tables (schema ``console``): users, sessions, failed logins, actions.

Passwords are hashed by the caller (argon2); session ids are stored only as their SHA-256, so the
table cannot be used to take over a session. Time comparisons use the database clock, so every
console process sees the same expiry and rate-limit window.
"""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg

ROLES: tuple[str, ...] = ("viewer", "operator", "approver", "admin")


def session_hash(session_id: str) -> str:
    """What is stored for a session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


async def upsert_user(pool: asyncpg.Pool, name: str, role: str, password_hash: str) -> bool:
    """Create the user, or set a new role and password; True when the user is new."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    created = await pool.fetchval(
        "INSERT INTO console.users (name, role, password_hash) VALUES ($1, $2, $3) "
        "ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash "
        "RETURNING (xmax = 0)",
        name,
        role,
        password_hash,
    )
    return bool(created)


async def user(pool: asyncpg.Pool, name: str) -> dict[str, Any] | None:
    """The user's row (name, role, password_hash), or None."""
    row = await pool.fetchrow("SELECT name, role, password_hash FROM console.users WHERE name = $1", name)
    return dict(row) if row is not None else None


async def users(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every user with role (no hashes)."""
    rows = await pool.fetch("SELECT name, role, created_at FROM console.users ORDER BY name")
    return [dict(r) for r in rows]


async def set_password_hash(pool: asyncpg.Pool, name: str, password_hash: str) -> None:
    """Store a re-hashed password (argon2 parameters changed)."""
    await pool.execute("UPDATE console.users SET password_hash = $2 WHERE name = $1", name, password_hash)


async def create_session(
    pool: asyncpg.Pool, session_id: str, user_name: str, csrf_token: str, ttl_seconds: int
) -> None:
    """A new session for ``user_name``; expired sessions are removed on the way."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM console.sessions WHERE expires_at < now()")
        await conn.execute(
            "INSERT INTO console.sessions (id_hash, user_name, csrf_token, expires_at) "
            "VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            session_hash(session_id),
            user_name,
            csrf_token,
            float(ttl_seconds),
        )


async def session(pool: asyncpg.Pool, session_id: str) -> dict[str, Any] | None:
    """The live session (user_name, role, csrf_token), or None when unknown or expired."""
    row = await pool.fetchrow(
        "SELECT s.user_name, u.role, s.csrf_token FROM console.sessions s "
        "JOIN console.users u ON u.name = s.user_name WHERE s.id_hash = $1 AND s.expires_at > now()",
        session_hash(session_id),
    )
    return dict(row) if row is not None else None


async def delete_session(pool: asyncpg.Pool, session_id: str) -> None:
    """Log out."""
    await pool.execute("DELETE FROM console.sessions WHERE id_hash = $1", session_hash(session_id))


async def recent_login_failures(
    pool: asyncpg.Pool, user_name: str, client_ip: str, window_seconds: int
) -> int:
    """Failed logins of ``user_name`` from ``client_ip`` in the last ``window_seconds``."""
    value = await pool.fetchval(
        "SELECT count(*) FROM console.login_failures WHERE user_name = $1 AND client_ip = $2 "
        "AND failed_at > now() - make_interval(secs => $3)",
        user_name,
        client_ip,
        float(window_seconds),
    )
    return int(value or 0)


async def record_login_failure(pool: asyncpg.Pool, user_name: str, client_ip: str) -> None:
    """One failed login (old rows are pruned on the way)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM console.login_failures WHERE failed_at < now() - interval '1 day'")
        await conn.execute(
            "INSERT INTO console.login_failures (user_name, client_ip) VALUES ($1, $2)", user_name, client_ip
        )


async def record_action(
    pool: asyncpg.Pool,
    *,
    user_name: str,
    role: str,
    action: str,
    target: str,
    reason: str | None,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """One console action in the console's audit trail."""
    await pool.execute(
        "INSERT INTO console.actions (user_name, role, action, target, reason, outcome, detail) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        user_name,
        role,
        action,
        target,
        reason,
        outcome,
        detail or {},  # the pool's codec encodes JSON
    )


async def actions(pool: asyncpg.Pool, *, target: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Console actions, newest first (on one target, or all)."""
    rows = await pool.fetch(
        "SELECT at, user_name, role, action, target, reason, outcome, detail FROM console.actions "
        "WHERE ($1::text IS NULL OR target = $1) ORDER BY id DESC LIMIT $2",
        target,
        limit,
    )
    return [dict(r) for r in rows]
