"""AWS Signature Version 4 for the Marketplace calls, with ``hmac`` and ``hashlib`` only (no SDK).

The steps are AWS's published ones: a canonical request (method, URI, query, headers, signed
header names, payload hash), a string to sign (algorithm, time, credential scope, hash of the
canonical request), a signing key derived from the secret by date, region and service, and the
``Authorization`` header. ``tests/unit/intake/test_intake_sigv4.py`` checks it against the
``get-vanilla`` and ``post-vanilla`` cases of AWS's Signature Version 4 test suite.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import httpx

ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True)
class AwsCredentials:
    """An access key pair (and session token for temporary credentials); ``repr`` hides the secrets."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        return f"AwsCredentials(access_key_id={self.access_key_id!r}, secret_access_key='**********')"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _uri(path: str) -> str:
    """Each path segment URI-encoded once (every service but S3 signs the path as sent)."""
    return quote(path or "/", safe="/-_.~")


def _query(query: str) -> str:
    pairs: list[tuple[str, str]] = []
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        pairs.append((quote(name, safe="-_.~"), quote(value, safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _header_value(value: str) -> str:
    return re.sub(r"\s+", " ", value.strip())


def canonical_request(method: str, url: str, headers: Mapping[str, str], payload: bytes) -> tuple[str, str]:
    """The canonical request and its signed header names (``headers`` must include ``host``)."""
    parts = urlsplit(url)
    canon = {k.lower(): _header_value(v) for k, v in headers.items()}
    signed = ";".join(sorted(canon))
    lines = "".join(f"{k}:{canon[k]}\n" for k in sorted(canon))
    request = "\n".join(
        [method.upper(), _uri(parts.path), _query(parts.query), lines, signed, _sha256(payload)]
    )
    return request, signed


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """The key of one day, region and service: HMAC chain from ``AWS4`` + secret."""
    key = _hmac(("AWS4" + secret).encode(), day)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    payload: bytes,
    *,
    credentials: AwsCredentials,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to add to a request: ``X-Amz-Date``, ``Authorization`` (and the session token).

    ``headers`` are the ones to sign; ``host`` is taken from ``url`` when absent.
    """
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    to_sign = {k.lower(): v for k, v in headers.items()}
    to_sign.setdefault("host", urlsplit(url).netloc)
    to_sign["x-amz-date"] = amz_date
    if credentials.session_token:
        to_sign["x-amz-security-token"] = credentials.session_token
    request, signed = canonical_request(method, url, to_sign, payload)
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([ALGORITHM, amz_date, scope, _sha256(request.encode())])
    key = signing_key(credentials.secret_access_key, day, region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    added = {
        "X-Amz-Date": amz_date,
        "Authorization": (
            f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        ),
    }
    if credentials.session_token:
        added["X-Amz-Security-Token"] = credentials.session_token
    return added


# Headers a proxy or the HTTP stack may change on the way: never signed.
_UNSIGNED = frozenset(
    {"authorization", "user-agent", "accept", "accept-encoding", "connection", "content-length"}
)


class SigV4Auth(httpx.Auth):
    """Signs every httpx request (each retry again, with its own time)."""

    requires_request_body = True

    def __init__(self, credentials: AwsCredentials, *, region: str, service: str) -> None:
        self.credentials = credentials
        self.region = region
        self.service = service

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the signature headers to ``request``."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _UNSIGNED}
        request.headers.update(
            sign(
                request.method,
                str(request.url),
                headers,
                request.content,
                credentials=self.credentials,
                region=self.region,
                service=self.service,
                now=datetime.now(UTC),
            )
        )
        yield request
