"""OIDC login (authorization-code flow) against a small OpenID provider served over real HTTP.

The provider is a test double of an identity provider (not of the broker or database): it signs ID
tokens with its own RSA key. Checked: a known user gets a session with its console role; an
unknown identity, a forged state, a token signed by another key, for another audience or with
another nonce get none.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from shared.db.uow import Database
from shared.settings import Settings
from som.console.app import create_app
from tests.integration.console_helpers import make_user

pytestmark = pytest.mark.integration
CLIENT_ID, CLIENT_SECRET = "som-console", "s3cret-of-the-client"


@dataclass
class FakeProvider:
    """What the identity provider does next: who logs in, and how it misbehaves."""

    base: str = ""
    username: str = ""
    key: Any = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    other_key: Any = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    sign_with_other_key: bool = False
    audience: str = CLIENT_ID
    nonce_override: str | None = None
    codes: dict[str, str] = field(default_factory=dict)  # code -> nonce

    def app(self) -> Starlette:
        async def discovery(_: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.base,
                    "authorization_endpoint": f"{self.base}/authorize",
                    "token_endpoint": f"{self.base}/token",
                    "jwks_uri": f"{self.base}/jwks",
                }
            )

        async def authorize(request: Request) -> Response:
            q = request.query_params
            assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
            code = uuid.uuid4().hex
            self.codes[code] = q["nonce"]
            return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}")

        async def token(request: Request) -> Response:
            auth = httpx.BasicAuth(CLIENT_ID, CLIENT_SECRET)._auth_header
            if request.headers.get("authorization") != auth:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            form = await request.form()
            nonce = self.codes.pop(str(form["code"]), None)
            if nonce is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            now = int(time.time())
            claims = {
                "iss": self.base,
                "aud": self.audience,
                "sub": f"id-{self.username}",
                "preferred_username": self.username,
                "iat": now,
                "exp": now + 300,
                "nonce": self.nonce_override or nonce,
            }
            signer = self.other_key if self.sign_with_other_key else self.key
            id_token = jwt.encode(claims, signer, algorithm="RS256", headers={"kid": "k1"})
            return JSONResponse({"access_token": "x", "token_type": "Bearer", "id_token": id_token})

        async def jwks(_: Request) -> Response:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
            return JSONResponse({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]})

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/authorize", authorize),
                Route("/token", token, methods=["POST"]),
                Route("/jwks", jwks),
            ]
        )


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = FakeProvider(base=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield fake
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task


async def _sso(
    settings: Settings, db: Database, provider: FakeProvider
) -> tuple[httpx.AsyncClient, httpx.Response]:
    """Go through the flow as a browser would; returns the console client and the callback's answer."""
    s = settings.model_copy(
        update={
            "oidc_issuer": provider.base,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
        }
    )
    console = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(s, db.pool)), base_url="http://console.test"
    )
    login_page = await console.get("/login")
    assert 'href="/login/oidc"' in login_page.text
    start = await console.get("/login/oidc")
    assert start.status_code == 303 and start.headers["location"].startswith(f"{provider.base}/authorize?")
    async with httpx.AsyncClient() as browser:
        at_provider = await browser.get(start.headers["location"])
    assert at_provider.status_code in (302, 307)
    back = urlparse(at_provider.headers["location"])
    assert f"{back.scheme}://{back.netloc}" == "http://console.test" and back.path == "/login/oidc/callback"
    return console, await console.get(f"{back.path}?{back.query}")


async def test_known_user_logs_in_with_its_console_role(
    settings: Settings, db: Database, provider: FakeProvider
) -> None:
    provider.username = await make_user(db, "approver")
    console, done = await _sso(settings, db, provider)
    try:
        assert done.status_code == 303 and done.headers["location"] == "/", done.text
        page = await console.get("/approvals")
        assert page.status_code == 200 and f"{provider.username} (approver)" in page.text
    finally:
        await console.aclose()


@pytest.mark.parametrize(
    "fault", ["unknown_user", "other_key", "other_audience", "other_nonce", "forged_state"]
)
async def test_untrusted_answers_get_no_session(
    settings: Settings, db: Database, provider: FakeProvider, fault: str
) -> None:
    provider.username = await make_user(db, "admin")
    if fault == "unknown_user":
        provider.username = f"stranger-{uuid.uuid4().hex[:6]}"
    provider.sign_with_other_key = fault == "other_key"
    provider.audience = "someone-else" if fault == "other_audience" else CLIENT_ID
    provider.nonce_override = "replayed-nonce" if fault == "other_nonce" else None
    if fault == "forged_state":
        s = settings.model_copy(
            update={
                "oidc_issuer": provider.base,
                "oidc_client_id": CLIENT_ID,
                "oidc_client_secret": CLIENT_SECRET,
            }
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(s, db.pool)), base_url="http://console.test"
        ) as console:
            start = await console.get("/login/oidc")
            state = parse_qs(urlparse(start.headers["location"]).query)["state"][0]
            # A code and state from an attacker's own login, delivered to the victim's browser.
            done = await console.get(f"/login/oidc/callback?code=abc&state={state[::-1]}")
            assert done.status_code == 403 and "som_session" not in done.headers.get("set-cookie", "")
        return
    console, done = await _sso(settings, db, provider)
    try:
        assert done.status_code == 403, (fault, done.text)
        why = {
            "unknown_user": "no console user",
            "other_key": "Signature verification failed",
            "other_audience": "Audience doesn",
            "other_nonce": "nonce does not match",
        }[fault]
        assert why in done.text, done.text
        assert "som_session=" not in done.headers.get("set-cookie", "")
        assert (await console.get("/")).status_code == 303  # still not logged in
    finally:
        await console.aclose()
