"""Webhook signature verification (Stripe, Shopify). Pure: the current time is passed in.

Each verifier returns ``None`` when the signature is valid, else a :class:`RejectionReason`
(``SIGNATURE_MISSING``, ``SIGNATURE_INVALID``, ``SIGNATURE_EXPIRED``). Header names are
matched case-insensitively; digests are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from services.intake.domain.errors import reason
from services.intake.domain.wire import header
from shared.contracts.canonical import RejectionReason

STRIPE_HEADER = "Stripe-Signature"
SHOPIFY_HEADER = "X-Shopify-Hmac-Sha256"
STRIPE_TOLERANCE_SECONDS = 300  # Stripe's own libraries default to five minutes

Secret = str | bytes
Secrets = Secret | Sequence[Secret]


def _keys(secrets: Secrets) -> list[bytes]:
    """Secrets as bytes; several are accepted so a rotated secret keeps working during the overlap."""
    items: Sequence[Secret] = [secrets] if isinstance(secrets, str | bytes) else secrets
    return [s.encode() if isinstance(s, str) else bytes(s) for s in items if s]


def _epoch(now: datetime | int | float) -> float:
    return now.timestamp() if isinstance(now, datetime) else float(now)


def verify_stripe(
    body: bytes,
    headers: Mapping[str, Any] | None,
    secrets: Secrets,
    *,
    now: datetime | int | float,
    tolerance_seconds: int = STRIPE_TOLERANCE_SECONDS,
) -> RejectionReason | None:
    """Check ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`` = HMAC-SHA256(secret, ``"{t}.{body}"``).

    ``now`` is the receipt time (datetime or epoch seconds); a timestamp further than
    ``tolerance_seconds`` from it is ``SIGNATURE_EXPIRED`` (replay protection).
    """
    field = f"headers.{STRIPE_HEADER}"
    value = header(headers, STRIPE_HEADER)
    if value is None:
        return reason("SIGNATURE_MISSING", "no Stripe-Signature header", field)
    timestamp: str | None = None
    candidates: list[str] = []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t":
            timestamp = item.strip()
        elif key == "v1":
            candidates.append(item.strip().lower())
    if not timestamp or not re.fullmatch(r"[0-9]{1,12}", timestamp, re.ASCII) or not candidates:
        return reason("SIGNATURE_INVALID", "Stripe-Signature lacks t= or v1=", field)
    keys = _keys(secrets)
    if not keys:
        return reason("SIGNATURE_INVALID", "no signing secret configured for Stripe", field)
    signed = timestamp.encode() + b"." + bytes(body)
    expected = [hmac.new(k, signed, hashlib.sha256).hexdigest() for k in keys]
    if not any(hmac.compare_digest(e, c) for e in expected for c in candidates):
        return reason("SIGNATURE_INVALID", "Stripe signature does not match the payload", field)
    if abs(_epoch(now) - int(timestamp)) > tolerance_seconds:
        message = f"Stripe signature timestamp is outside the {tolerance_seconds}s tolerance"
        return reason("SIGNATURE_EXPIRED", message, field)
    return None


def verify_shopify(
    body: bytes, headers: Mapping[str, Any] | None, secrets: Secrets
) -> RejectionReason | None:
    """Check ``X-Shopify-Hmac-Sha256`` = base64(HMAC-SHA256(secret, raw body))."""
    field = f"headers.{SHOPIFY_HEADER}"
    value = header(headers, SHOPIFY_HEADER)
    if value is None:
        return reason("SIGNATURE_MISSING", "no X-Shopify-Hmac-Sha256 header", field)
    try:
        given = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return reason("SIGNATURE_INVALID", "X-Shopify-Hmac-Sha256 is not base64", field)
    keys = _keys(secrets)
    if not keys:
        return reason("SIGNATURE_INVALID", "no signing secret configured for Shopify", field)
    if not any(hmac.compare_digest(hmac.new(k, bytes(body), hashlib.sha256).digest(), given) for k in keys):
        return reason("SIGNATURE_INVALID", "Shopify HMAC does not match the payload", field)
    return None


def sign_stripe(body: bytes, secret: Secret, timestamp: int) -> str:
    """A ``Stripe-Signature`` header value for ``body`` (tests and local tools)."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def sign_shopify(body: bytes, secret: Secret) -> str:
    """An ``X-Shopify-Hmac-Sha256`` header value for ``body`` (tests and local tools)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def verify_signature(
    channel: str,
    body: bytes,
    headers: Mapping[str, Any] | None,
    secrets: Secrets,
    *,
    now: datetime | int | float,
) -> RejectionReason | None:
    """Verify ``body`` for ``channel``; ``None`` for valid and for channels without a scheme here.

    Channels authenticated otherwise (Azure bearer JWT, SNS certificate signatures, Pub/Sub
    push auth) are the receiver's job and pass through unchanged.
    """
    if channel == "stripe":
        return verify_stripe(body, headers, secrets, now=now)
    if channel == "shopify":
        return verify_shopify(body, headers, secrets)
    return None
