"""OpenID Connect login for the console: the authorization-code flow with a confidential client.

Discovery from ``{issuer}/.well-known/openid-configuration``; the code is exchanged at the token
endpoint with HTTP Basic client authentication; the ID token's signature is checked against the
provider's JWKS (by ``kid``), and its issuer, audience, expiry and nonce are checked. Who the user
is comes from one claim (``SOM_OIDC_USERNAME_CLAIM``); the role still comes from the console's own
users, so an identity the console does not know gets no session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

# Asymmetric algorithms only: a symmetric one would let anyone holding the client secret sign.
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class OidcError(Exception):
    """The provider's answer cannot be trusted or used; no session is made."""


@dataclass(frozen=True)
class Provider:
    """The endpoints a provider's discovery document names."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


async def discover(issuer: str, *, timeout: float = 10.0) -> Provider:
    """Read the provider's discovery document (its issuer must be the one configured)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    async with httpx.AsyncClient(timeout=timeout) as client:
        r = await client.get(url)
    r.raise_for_status()
    doc = r.json()
    if doc.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise OidcError(f"discovery names issuer {doc.get('issuer')!r}, not {issuer!r}")
    return Provider(doc["issuer"], doc["authorization_endpoint"], doc["token_endpoint"], doc["jwks_uri"])


def authorization_url(provider: Provider, client_id: str, redirect_uri: str, state: str, nonce: str) -> str:
    """Where to send the browser to log in."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid profile email",
            "state": state,
            "nonce": nonce,
        }
    )
    sep = "&" if "?" in provider.authorization_endpoint else "?"
    return f"{provider.authorization_endpoint}{sep}{query}"


async def exchange_code(
    provider: Provider,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    *,
    timeout: float = 10.0,
) -> str:
    """The ID token the token endpoint gives for ``code``."""
    async with httpx.AsyncClient(timeout=timeout) as client:
        r = await client.post(
            provider.token_endpoint,
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
            auth=(client_id, client_secret),
        )
    if r.status_code != 200:
        raise OidcError(f"token endpoint answered {r.status_code}")
    token = r.json().get("id_token")
    if not isinstance(token, str):
        raise OidcError("the token endpoint gave no id_token")
    return token


async def verify_id_token(
    provider: Provider, id_token: str, client_id: str, nonce: str, *, timeout: float = 10.0
) -> dict[str, Any]:
    """The ID token's claims after checking signature, issuer, audience, expiry and nonce."""
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        raise OidcError(f"malformed id_token: {exc}") from exc
    async with httpx.AsyncClient(timeout=timeout) as client:
        r = await client.get(provider.jwks_uri)
    r.raise_for_status()
    keys = [k for k in r.json().get("keys", []) if k.get("kid") == header.get("kid")]
    if len(keys) != 1:
        raise OidcError(f"no single signing key {header.get('kid')!r} in the provider's JWKS")
    try:
        key = jwt.PyJWK(keys[0]).key
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key=key,
            algorithms=ALGORITHMS,
            audience=client_id,
            issuer=provider.issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise OidcError(f"id_token refused: {exc}") from exc
    if claims.get("nonce") != nonce:
        raise OidcError("id_token nonce does not match this login")
    return claims
