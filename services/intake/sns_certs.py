"""AWS SNS signing certificates: fetched once per URL and cached (the I/O half of the SNS check).

Only ``https://sns.<region>.amazonaws.com/...pem`` URLs are ever fetched
(:func:`services.intake.domain.signatures.sns_cert_url_allowed`); anything else is refused
before a request is made, so a forged ``SigningCertURL`` cannot make the worker call out.
A failed fetch yields ``None``: the message is then rejected as ``SIGNATURE_INVALID``
rather than trusted.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from services.intake.domain.signatures import sns_cert_url_allowed

log = logging.getLogger("som.intake.sns")


class SnsCertificates:
    """A per-process cache of signing certificates by URL (they are long-lived and rotate by URL)."""

    def __init__(
        self,
        pinned: dict[str, str] | None = None,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._cache: dict[str, str] = dict(pinned or {})
        self._lock = asyncio.Lock()
        self._timeout = timeout
        self._transport = transport

    async def get(self, url: str) -> str | None:
        """The PEM at ``url`` (cached), or ``None`` when the URL is not allowed or cannot be fetched."""
        if url in self._cache:
            return self._cache[url]
        if not sns_cert_url_allowed(url):
            return None
        async with self._lock:
            if url in self._cache:
                return self._cache[url]
            try:
                async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as http:
                    response = await http.get(url)
            except httpx.HTTPError as exc:
                log.warning("SNS certificate %s not fetched: %s", url, type(exc).__name__)
                return None
            if response.status_code != 200 or "BEGIN CERTIFICATE" not in response.text:
                log.warning("SNS certificate %s not fetched: HTTP %s", url, response.status_code)
                return None
            self._cache[url] = response.text
            return response.text
