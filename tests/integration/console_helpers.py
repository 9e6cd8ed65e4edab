"""Shared by the console tests: users, logging in through the real login form, reading tokens."""

from __future__ import annotations

import re
import uuid

import httpx

from shared import operators
from shared.db.uow import Database
from som.console.security import hash_password

PASSWORD = "correct horse battery"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


async def make_user(db: Database, role: str) -> str:
    """A new console user with ``role`` and :data:`PASSWORD`; returns the name."""
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    await operators.upsert_user(db.pool, name, role, hash_password(PASSWORD))
    return name


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _TOKEN.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def login(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    """Log in through the form (GET for the token, then POST); returns the POST's response."""
    page = await client.get("/login")
    return await client.post(
        "/login", data={"username": name, "password": password, "csrf_token": csrf_of(page.text)}
    )


async def session_token(client: httpx.AsyncClient) -> str:
    """The logged-in session's CSRF token (from any page)."""
    page = await client.get("/subscriptions")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)
