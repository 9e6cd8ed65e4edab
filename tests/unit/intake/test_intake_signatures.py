"""Stripe and Shopify webhook signatures: valid, forged, missing, expired; secrets rotate."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from intake_samples import FIXTURES

from services.intake.domain.signatures import (
    sign_shopify,
    sign_stripe,
    verify_shopify,
    verify_signature,
    verify_stripe,
)

BODY = (FIXTURES / "stripe" / "01-create.json").read_bytes()
SECRET = "whsec_test_9f8e7d6c5b4a"
T = 1741962906


def code(result: object) -> str | None:
    return getattr(result, "code", None)


def test_stripe_valid_signature() -> None:
    headers = {"Stripe-Signature": sign_stripe(BODY, SECRET, T)}
    assert verify_stripe(BODY, headers, SECRET, now=T + 10) is None
    assert verify_stripe(BODY, headers, SECRET, now=datetime.fromtimestamp(T, UTC)) is None


def test_stripe_header_name_is_case_insensitive_and_extra_schemes_are_ignored() -> None:
    value = f"t={T},v0=deadbeef,{sign_stripe(BODY, SECRET, T).split(',')[1]}"
    assert verify_stripe(BODY, {"stripe-signature": value}, SECRET, now=T) is None


def test_stripe_forged_body_or_secret_or_timestamp() -> None:
    headers = {"Stripe-Signature": sign_stripe(BODY, SECRET, T)}
    assert code(verify_stripe(BODY + b" ", headers, SECRET, now=T)) == "SIGNATURE_INVALID"
    assert code(verify_stripe(BODY, headers, "whsec_other", now=T)) == "SIGNATURE_INVALID"
    moved = {"Stripe-Signature": headers["Stripe-Signature"].replace(f"t={T}", f"t={T + 1}")}
    assert code(verify_stripe(BODY, moved, SECRET, now=T)) == "SIGNATURE_INVALID"
    # the sample's own header was made up: it must not verify with any secret
    assert code(verify_stripe(BODY, {"Stripe-Signature": f"t={T},v1={'5f' * 32}"}, SECRET, now=T)) == (
        "SIGNATURE_INVALID"
    )


def test_stripe_missing_or_malformed_header() -> None:
    assert code(verify_stripe(BODY, {}, SECRET, now=T)) == "SIGNATURE_MISSING"
    assert code(verify_stripe(BODY, None, SECRET, now=T)) == "SIGNATURE_MISSING"
    assert code(verify_stripe(BODY, {"Stripe-Signature": "garbage"}, SECRET, now=T)) == "SIGNATURE_INVALID"
    assert code(verify_stripe(BODY, {"Stripe-Signature": f"t={T}"}, SECRET, now=T)) == "SIGNATURE_INVALID"
    assert (
        code(verify_stripe(BODY, {"Stripe-Signature": "t=soon,v1=ab"}, SECRET, now=T)) == "SIGNATURE_INVALID"
    )


def test_stripe_expired_outside_the_tolerance_window() -> None:
    headers = {"Stripe-Signature": sign_stripe(BODY, SECRET, T)}
    assert verify_stripe(BODY, headers, SECRET, now=T + 300) is None
    assert code(verify_stripe(BODY, headers, SECRET, now=T + 301)) == "SIGNATURE_EXPIRED"
    assert code(verify_stripe(BODY, headers, SECRET, now=T - 301)) == "SIGNATURE_EXPIRED"
    assert verify_stripe(BODY, headers, SECRET, now=T + 3000, tolerance_seconds=3600) is None


def test_stripe_rotated_secrets() -> None:
    headers = {"Stripe-Signature": sign_stripe(BODY, "whsec_new", T)}
    assert verify_stripe(BODY, headers, ["whsec_old", "whsec_new"], now=T) is None
    assert code(verify_stripe(BODY, headers, [], now=T)) == "SIGNATURE_INVALID"


def test_shopify_hmac() -> None:
    body = (FIXTURES / "shopify" / "01-create.json").read_bytes()
    good = {"X-Shopify-Hmac-Sha256": sign_shopify(body, "shpss_secret")}
    assert verify_shopify(body, good, "shpss_secret") is None
    assert (
        verify_shopify(body, {"x-shopify-hmac-sha256": good["X-Shopify-Hmac-Sha256"]}, b"shpss_secret")
        is None
    )
    assert code(verify_shopify(body + b"\n", good, "shpss_secret")) == "SIGNATURE_INVALID"
    assert code(verify_shopify(body, good, "other")) == "SIGNATURE_INVALID"
    assert (
        code(verify_shopify(body, {"X-Shopify-Hmac-Sha256": "not base64!"}, "shpss_secret"))
        == "SIGNATURE_INVALID"
    )
    assert code(verify_shopify(body, {}, "shpss_secret")) == "SIGNATURE_MISSING"


def test_dispatch_by_channel() -> None:
    headers = {"Stripe-Signature": sign_stripe(BODY, SECRET, T)}
    assert verify_signature("stripe", BODY, headers, SECRET, now=T) is None
    assert code(verify_signature("shopify", BODY, headers, SECRET, now=T)) == "SIGNATURE_MISSING"
    assert verify_signature("azure_marketplace", BODY, {}, SECRET, now=T) is None  # authenticated elsewhere


@given(body=st.binary(max_size=300), secret=st.text(min_size=1, max_size=20), flip=st.integers(0, 63))
def test_any_single_digest_change_is_rejected(body: bytes, secret: str, flip: int) -> None:
    header = sign_stripe(body, secret, T)
    assert verify_stripe(body, {"Stripe-Signature": header}, secret, now=T) is None
    digest = header.split("v1=")[1]
    forged = digest[:flip] + ("0" if digest[flip] != "0" else "1") + digest[flip + 1 :]
    assert (
        code(verify_stripe(body, {"Stripe-Signature": f"t={T},v1={forged}"}, secret, now=T))
        == "SIGNATURE_INVALID"
    )
