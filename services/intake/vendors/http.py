"""One retrying, time-bounded HTTP client under every vendor client.

Every call is retried with backoff on a timeout, a connection failure, HTTP 408, 429 or 5xx, and
bounded by a timeout per attempt. What still fails raises :class:`VendorUnavailable`, a
:class:`~shared.messaging.errors.TransientError`: inside a handler the runtime sends the message to its
retry topic; nothing falls back to a default. A 4xx answer is :class:`VendorRefused` (retrying the
same request cannot help). Credentials travel as headers built once; they are never logged, and
error messages carry the method and path only, never headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from shared.messaging.errors import TransientError

log = logging.getLogger("som.intake.vendors")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class VendorUnavailable(TransientError):
    """The vendor did not answer usefully in time (timeout, connection, 408/429/5xx): try again later."""


class VendorRefused(Exception):
    """The vendor answered 4xx: the request itself is refused (not retried as is)."""

    def __init__(self, message: str, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class VendorHttp:
    """An ``httpx.AsyncClient`` with retries and backoff; ``transport`` is for tests only."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        backoff: Sequence[float] = (0.2, 1.0, 3.0),
        transport: httpx.AsyncBaseTransport | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.backoff = tuple(backoff)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Accept": "application/json", **dict(headers or {})},
            timeout=timeout,
            transport=transport,
            auth=auth,
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response of the first attempt that is not a retryable failure.

        Raises :class:`VendorUnavailable` after the last retry, :class:`VendorRefused` on a 4xx.
        """
        last = ""
        for attempt in range(len(self.backoff) + 1):
            if attempt:
                await asyncio.sleep(self.backoff[attempt - 1])
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:  # timeouts and connection failures alike
                last = f"{type(exc).__name__}"
                log.info("vendor %s %s attempt %d failed: %s", method, path, attempt + 1, last)
                continue
            if response.status_code in RETRY_STATUSES:
                last = f"HTTP {response.status_code}"
                log.info("vendor %s %s attempt %d answered %s", method, path, attempt + 1, last)
                continue
            if response.status_code >= 400:
                raise VendorRefused(
                    f"{method} {path}: HTTP {response.status_code}",
                    response.status_code,
                    response.text[:500],
                )
            return response
        raise VendorUnavailable(f"{method} {path}: {last} after {len(self.backoff) + 1} attempts")

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The response body as JSON (``None`` for an empty body)."""
        response = await self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise VendorUnavailable(f"{method} {path}: the answer is not JSON") from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


def bearer(token: str | None) -> dict[str, str]:
    """An ``Authorization`` header for a bearer token (none when unset)."""
    return {"Authorization": f"Bearer {token}"} if token else {}
