"""Webhook signature verification (Stripe, Shopify HMAC; Azure and GCP bearer JWTs; AWS SNS).

Pure: the current time, keys and certificates are passed in.

Each verifier returns ``None`` when the signature is valid, else a :class:`RejectionReason`
(``SIGNATURE_MISSING``, ``SIGNATURE_INVALID``, ``SIGNATURE_EXPIRED``). Header names are
matched case-insensitively; digests are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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


# --- bearer JWTs (Azure webhook, GCP Pub/Sub push) and AWS SNS message signatures ----------------
#
# Verification is pure: keys and certificates are given (PEM text or a JWKS document from
# settings); fetching them is I/O and belongs to a thin layer outside the domain.

AUTHORIZATION_HEADER = "Authorization"
JWT_LEEWAY_SECONDS = 60  # clock skew tolerated on exp / nbf / iat


@dataclass(frozen=True)
class JwtPolicy:
    """What a bearer token must satisfy: signed by one of ``keys``, with these claims.

    ``keys``: PEM public keys or certificates, or JWKS documents (``{"keys": [...]}``, RSA
    only). ``issuers``: accepted ``iss`` values (empty: not checked). ``audience``: the ``aud``
    required. ``claims``: further exact claim values (GCP: the push service account ``email``).
    """

    keys: tuple[str, ...]
    audience: str | None = None
    issuers: tuple[str, ...] = ()
    claims: tuple[tuple[str, Any], ...] = ()


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _public_keys(sources: Sequence[str]) -> list[tuple[str | None, rsa.RSAPublicKey]]:
    """(key id or None, RSA key) for every PEM key, certificate or JWKS entry in ``sources``."""
    found: list[tuple[str | None, rsa.RSAPublicKey]] = []
    for source in sources:
        text = source.strip()
        if text.startswith("{"):
            try:
                doc = json.loads(text)
            except ValueError:
                continue
            for jwk in doc.get("keys", []) if isinstance(doc, dict) else []:
                if isinstance(jwk, dict) and jwk.get("kty") == "RSA" and "n" in jwk and "e" in jwk:
                    numbers = rsa.RSAPublicNumbers(
                        int.from_bytes(_b64url(jwk["e"]), "big"), int.from_bytes(_b64url(jwk["n"]), "big")
                    )
                    found.append((jwk.get("kid"), numbers.public_key()))
            continue
        try:
            if "CERTIFICATE" in text:
                key: Any = x509.load_pem_x509_certificate(text.encode()).public_key()
            else:
                key = serialization.load_pem_public_key(text.encode())
        except ValueError:
            continue
        if isinstance(key, rsa.RSAPublicKey):
            found.append((None, key))
    return found


def verify_bearer_jwt(
    headers: Mapping[str, Any] | None,
    policy: JwtPolicy,
    *,
    now: datetime | int | float,
    scheme: str,
) -> RejectionReason | None:
    """Check ``Authorization: Bearer <JWT>``: RS256 signature by a configured key, then the claims.

    ``scheme`` names the check in messages (``Azure webhook``, ``Pub/Sub push``). The token
    itself never appears in a message: it is a credential.
    """
    field = f"headers.{AUTHORIZATION_HEADER}"
    value = header(headers, AUTHORIZATION_HEADER)
    if value is None or not value.strip().lower().startswith("bearer "):
        return reason("SIGNATURE_MISSING", f"no bearer token on the {scheme} delivery", field)
    token = value.strip()[7:].strip()
    parts = token.split(".")
    if len(parts) != 3:
        return reason("SIGNATURE_INVALID", f"the {scheme} bearer token is not a JWT", field)
    try:
        head = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, binascii.Error):
        return reason("SIGNATURE_INVALID", f"the {scheme} bearer token is not a JWT", field)
    if not isinstance(head, dict) or not isinstance(claims, dict):
        return reason("SIGNATURE_INVALID", f"the {scheme} bearer token is not a JWT", field)
    if head.get("alg") != "RS256":  # never "none", never an HMAC keyed with a public key
        return reason("SIGNATURE_INVALID", f"the {scheme} token is not RS256", field)
    kid = head.get("kid")
    keys = [k for i, k in _public_keys(policy.keys) if i is None or kid is None or i == kid]
    if not keys:
        return reason("SIGNATURE_INVALID", f"no configured key matches the {scheme} token", field)
    signed = f"{parts[0]}.{parts[1]}".encode()
    if not any(_rsa_ok(k, signature, signed, hashes.SHA256()) for k in keys):
        return reason("SIGNATURE_INVALID", f"the {scheme} token signature does not verify", field)
    at = _epoch(now)
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or at > exp + JWT_LEEWAY_SECONDS:
        return reason("SIGNATURE_EXPIRED", f"the {scheme} token has expired (or has no exp)", field)
    if isinstance(nbf, int | float) and at < nbf - JWT_LEEWAY_SECONDS:
        return reason("SIGNATURE_INVALID", f"the {scheme} token is not valid yet", field)
    if policy.issuers and claims.get("iss") not in policy.issuers:
        return reason("SIGNATURE_INVALID", f"the {scheme} token has an unexpected issuer", field)
    if policy.audience is not None:
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if policy.audience not in auds:
            return reason("SIGNATURE_INVALID", f"the {scheme} token has an unexpected audience", field)
    for name, wanted in policy.claims:
        if claims.get(name) != wanted:
            return reason(
                "SIGNATURE_INVALID", f"the {scheme} token claim {name!r} is not the expected one", field
            )
    return None


def _rsa_ok(key: rsa.RSAPublicKey, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm) -> bool:
    try:
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        return False
    return True


# AWS SNS: https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
SNS_CERT_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$", re.ASCII)
_SNS_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}


def sns_cert_url_allowed(url: str) -> bool:
    """True for an ``https://sns.<region>.amazonaws.com/...pem`` certificate URL (nothing else is fetched)."""
    parsed = urlsplit(url)
    return (
        parsed.scheme == "https"
        and parsed.port is None
        and SNS_CERT_HOST.match(parsed.hostname or "") is not None
        and parsed.path.endswith(".pem")
    )


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes | None:
    """The canonical string AWS signs: ``name\\nvalue\\n`` for the type's fields, in order, when present.

    ``None`` for a message type that is not signed this way.
    """
    fields = _SNS_FIELDS.get(str(message.get("Type")))
    if fields is None:
        return None
    out = []
    for name in fields:
        value = message.get(name)
        if value is None or (name == "Subject" and not isinstance(value, str)):
            continue
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode()


def verify_sns(message: Mapping[str, Any], certificate_pem: str | bytes | None) -> RejectionReason | None:
    """Check an SNS envelope's ``Signature`` with the certificate at its ``SigningCertURL``.

    SignatureVersion ``1`` is RSA with SHA1, ``2`` RSA with SHA256. The caller fetched the
    certificate (only from an allowed URL, see :func:`sns_cert_url_allowed`) and passes its PEM.
    """
    field = "Signature"
    signature_b64, version = message.get("Signature"), str(message.get("SignatureVersion") or "")
    url = message.get("SigningCertURL") or message.get("SigningCertUrl")
    if not isinstance(signature_b64, str) or not signature_b64 or not isinstance(url, str):
        return reason("SIGNATURE_MISSING", "the SNS message has no Signature or SigningCertURL", field)
    if not sns_cert_url_allowed(url):
        return reason(
            "SIGNATURE_INVALID", "SigningCertURL is not an https://sns.<region>.amazonaws.com URL", field
        )
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        return reason("SIGNATURE_INVALID", f"unknown SNS SignatureVersion {version!r}", field)
    signed = sns_string_to_sign(message)
    if signed is None:
        return reason("SIGNATURE_INVALID", "not a signed SNS message type", field)
    if not certificate_pem:
        return reason("SIGNATURE_INVALID", "the SNS signing certificate could not be obtained", field)
    try:
        pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
        key = x509.load_pem_x509_certificate(pem).public_key()
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, binascii.Error):
        return reason("SIGNATURE_INVALID", "the SNS signature or certificate cannot be read", field)
    if not isinstance(key, rsa.RSAPublicKey) or not _rsa_ok(key, signature, signed, algorithm):
        return reason("SIGNATURE_INVALID", "the SNS signature does not match the message", field)
    return None
