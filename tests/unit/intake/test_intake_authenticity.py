"""Azure webhook JWT, GCP Pub/Sub push token and AWS SNS signatures: each passes when genuine,
and each way of forging it is SIGNATURE_INVALID / _MISSING / _EXPIRED (never acted on)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from signing_keys import certificate_pem, jwks, jwt, public_pem, sign_sns

from services.intake.domain.signatures import (
    JwtPolicy,
    sns_cert_url_allowed,
    sns_string_to_sign,
    verify_bearer_jwt,
    verify_sns,
)
from services.intake.pipeline import ChannelAuth, channel_auth, check_signature, interpret
from shared.catalog import cached_catalog
from shared.settings import Settings

NOW = 1_760_000_000
TENANT_ISS = "https://sts.windows.net/0b7e5d21-94c4-4a0e-8f3b-2d6c9a1e7f40/"
AUD = "3c1f0d5e-azure-app"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "channels"


def _claims(**extra: Any) -> dict[str, Any]:
    return {"iss": TENANT_ISS, "aud": AUD, "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 3600, **extra}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


AZURE = JwtPolicy(keys=(jwks(),), audience=AUD, issuers=(TENANT_ISS,))


def _azure(headers: dict[str, str] | None) -> str | None:
    found = verify_bearer_jwt(headers, AZURE, now=NOW, scheme="Azure webhook")
    return found.code if found else None


def test_genuine_azure_token_passes() -> None:
    assert _azure(_bearer(jwt(_claims()))) is None
    # a PEM key or certificate works as well as a JWKS, and so does an audience list
    pem = JwtPolicy(keys=(public_pem(),), audience=AUD, issuers=(TENANT_ISS,))
    assert (
        verify_bearer_jwt(_bearer(jwt(_claims(aud=[AUD, "x"]), kid=None)), pem, now=NOW, scheme="t") is None
    )
    cert = JwtPolicy(keys=(certificate_pem(),), audience=AUD)
    assert verify_bearer_jwt(_bearer(jwt(_claims())), cert, now=NOW, scheme="t") is None


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (None, "SIGNATURE_MISSING"),
        ({"Authorization": "Basic abc"}, "SIGNATURE_MISSING"),
        (_bearer("not-a-jwt"), "SIGNATURE_INVALID"),
        (_bearer(jwt(_claims(), name="b")), "SIGNATURE_INVALID"),  # signed by another key
        (_bearer(jwt(_claims(), kid="other")), "SIGNATURE_INVALID"),  # unknown key id
        (_bearer(jwt(_claims(aud="someone-else"))), "SIGNATURE_INVALID"),
        (_bearer(jwt(_claims(iss="https://evil.example/"))), "SIGNATURE_INVALID"),
        (_bearer(jwt(_claims(exp=NOW - 3600))), "SIGNATURE_EXPIRED"),
        (_bearer(jwt({k: v for k, v in _claims().items() if k != "exp"})), "SIGNATURE_EXPIRED"),
        (_bearer(jwt(_claims(nbf=NOW + 3600))), "SIGNATURE_INVALID"),
        (_bearer(jwt(_claims(), alg="HS256")), "SIGNATURE_INVALID"),
    ],
)
def test_forged_azure_tokens_are_refused(headers: dict[str, str] | None, code: str) -> None:
    assert _azure(headers) == code


def test_a_tampered_claim_breaks_the_signature() -> None:
    head, _, sig = jwt(_claims()).split(".")
    other = jwt(_claims(aud="x")).split(".")[1]
    assert _azure(_bearer(f"{head}.{other}.{sig}")) == "SIGNATURE_INVALID"


def test_gcp_push_token_checks_audience_and_service_account() -> None:
    settings = Settings(
        gcp_push_keys=jwks(),
        gcp_push_audience="https://intake.example/push/gcp",
        gcp_push_email="push@tessellate.iam.gserviceaccount.com",
    )
    auth = channel_auth(settings)
    body = (FIXTURES / "gcp" / "01-create.json").read_bytes()
    good = _claims(
        iss="https://accounts.google.com",
        aud="https://intake.example/push/gcp",
        email="push@tessellate.iam.gserviceaccount.com",
        email_verified=True,
    )

    def check(claims: dict[str, Any]) -> str | None:
        found = check_signature("gcp_marketplace", body, {"headers": _bearer(jwt(claims))}, auth, now=NOW)
        return found.code if found else None

    assert check(good) is None
    assert check({**good, "email": "someone@else.iam.gserviceaccount.com"}) == "SIGNATURE_INVALID"
    assert check({**good, "email_verified": False}) == "SIGNATURE_INVALID"
    assert check({**good, "aud": "https://other.example/"}) == "SIGNATURE_INVALID"
    assert check({**good, "iss": "https://evil.example"}) == "SIGNATURE_INVALID"


# --- AWS SNS ---------------------------------------------------------------------------------------


def _sns(version: str = "2", **extra: Any) -> dict[str, Any]:
    inner = {"action": "subscribe-success", "customer-identifier": "X01AbC", "product-code": "4kq8xw2m"}
    message = {
        "Type": "Notification",
        "MessageId": "5d6f-0001",
        "TopicArn": "arn:aws:sns:us-east-1:287250355862:aws-mp-subscription-notification-4kq8xw2m",
        "Message": json.dumps(inner),
        "Timestamp": "2025-04-22T13:05:41.227Z",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        **extra,
    }
    return sign_sns(message, version=version)


@pytest.mark.parametrize("version", ["1", "2"])
def test_genuine_sns_message_passes(version: str) -> None:
    assert verify_sns(_sns(version), certificate_pem()) is None


def test_sns_string_to_sign_follows_the_documented_order() -> None:
    message = {"Type": "Notification", "Message": "m", "MessageId": "i", "Timestamp": "t", "TopicArn": "a"}
    assert (
        sns_string_to_sign(message)
        == b"Message\nm\nMessageId\ni\nTimestamp\nt\nTopicArn\na\nType\nNotification\n"
    )
    assert b"Subject\ns\n" in (sns_string_to_sign({**message, "Subject": "s"}) or b"")


def test_forged_sns_messages_are_refused() -> None:
    tampered = _sns()
    tampered["Message"] = tampered["Message"].replace("subscribe-success", "unsubscribe-success")
    assert verify_sns(tampered, certificate_pem()).code == "SIGNATURE_INVALID"  # type: ignore[union-attr]
    assert verify_sns(_sns(), certificate_pem("b")).code == "SIGNATURE_INVALID"  # type: ignore[union-attr]
    evil = _sns(SigningCertURL="https://sns.us-east-1.amazonaws.com.evil.example/cert.pem")
    assert verify_sns(evil, certificate_pem()).code == "SIGNATURE_INVALID"  # type: ignore[union-attr]
    unsigned = {k: v for k, v in _sns().items() if k != "Signature"}
    assert verify_sns(unsigned, certificate_pem()).code == "SIGNATURE_MISSING"  # type: ignore[union-attr]
    assert verify_sns({**_sns(), "SignatureVersion": "3"}, certificate_pem()).code == "SIGNATURE_INVALID"  # type: ignore[union-attr]
    assert verify_sns(_sns(), None).code == "SIGNATURE_INVALID"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        (CERT_URL, True),
        ("https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("http://sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/x.pem", False),
        ("https://evil.example/sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com:8443/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com/x.txt", False),
    ],
)
def test_only_aws_sns_certificate_urls_are_allowed(url: str, allowed: bool) -> None:
    assert sns_cert_url_allowed(url) is allowed


def test_aws_channel_checks_sns_but_not_eventbridge_and_refuses_raw_messages() -> None:
    auth = ChannelAuth(sns=True, sns_certificates={CERT_URL: certificate_pem()})
    genuine = json.dumps(_sns()).encode()
    assert check_signature("aws_marketplace", genuine, None, auth, now=NOW) is None
    eventbridge = (FIXTURES / "aws" / "05-create.json").read_bytes()
    assert check_signature("aws_marketplace", eventbridge, None, auth, now=NOW) is None
    raw = json.dumps(
        {"action": "subscribe-success", "customer-identifier": "X", "product-code": "p"}
    ).encode()
    assert check_signature("aws_marketplace", raw, None, auth, now=NOW).code == "SIGNATURE_MISSING"  # type: ignore[union-attr]


def test_without_configured_keys_nothing_is_checked_as_before() -> None:
    auth = channel_auth(Settings())
    assert not auth
    body = (FIXTURES / "azure" / "05-cancel.json").read_bytes()
    assert check_signature("azure_marketplace", body, None, auth, now=NOW) is None
    assert (
        check_signature(
            "aws_marketplace", (FIXTURES / "aws" / "01-create.json").read_bytes(), None, auth, now=NOW
        )
        is None
    )


def test_a_refused_payload_is_never_interpreted() -> None:
    auth = channel_auth(Settings(azure_webhook_keys=public_pem(), azure_webhook_audience=AUD))
    body = (FIXTURES / "azure" / "05-cancel.json").read_bytes()
    forged = {"headers": _bearer(jwt(_claims(), name="b"))}
    meaning = interpret(
        "azure_marketplace", body, forged, catalog=cached_catalog(None), secrets=auth, now=time.time()
    )
    assert meaning.disposition == "rejected" and [r.code for r in meaning.reasons] == ["SIGNATURE_INVALID"]
    assert meaning.verdicts == ()
