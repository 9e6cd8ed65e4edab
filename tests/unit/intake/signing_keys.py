"""Test key material: an RSA key pair, a self-signed certificate, JWT and SNS signing (tests only)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from services.intake.domain.signatures import sns_string_to_sign


@lru_cache(maxsize=4)
def key_pair(name: str = "a") -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key per name (cached: generating keys is slow)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(name: str = "a") -> str:
    """The public key as PEM."""
    return (
        key_pair(name)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def certificate_pem(name: str = "a") -> str:
    """A self-signed certificate for the key (what an SNS SigningCertURL serves)."""
    key = key_pair(name)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sns.test.{name}")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwks(name: str = "a", kid: str = "k1") -> str:
    """A JWKS document holding the public key under ``kid``."""
    numbers = key_pair(name).public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    return json.dumps({"keys": [{"kty": "RSA", "kid": kid, "use": "sig", "n": _b64url(n), "e": _b64url(e)}]})


def jwt(claims: dict[str, Any], name: str = "a", *, kid: str | None = "k1", alg: str = "RS256") -> str:
    """An RS256 JWT signed by the named key."""
    head: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid:
        head["kid"] = kid
    signing_input = f"{_b64url(json.dumps(head).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key_pair(name).sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def sign_sns(message: dict[str, Any], name: str = "a", *, version: str = "2") -> dict[str, Any]:
    """``message`` with SignatureVersion and Signature set as AWS SNS does."""
    signed = dict(message, SignatureVersion=version)
    data = sns_string_to_sign(signed)
    assert data is not None
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signed["Signature"] = base64.b64encode(key_pair(name).sign(data, padding.PKCS1v15(), algorithm)).decode()
    return signed
