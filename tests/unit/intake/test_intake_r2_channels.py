"""Channels round 2 (issue 10): SigV4 signing, GetAgreementTerms prices, the Azure get-operation check."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from signing_keys import jwks, jwt
from typer.testing import CliRunner

from services.intake.domain.normalizers import normalize
from services.intake.pipeline import azure_webhook_operation, operation_finding
from services.intake.vendors.clients import AwsMarketplace
from services.intake.vendors.http import VendorRefused
from services.intake.vendors.lookups import VendorLookups
from services.intake.vendors.sigv4 import AwsCredentials, canonical_request, sign
from shared.contracts.canonical import CanonicalAccount, CanonicalCustomer, CanonicalOrderChange
from som.cli import app
from tests.standins.vendors import AwsStandIn

# AWS Signature Version 4 test suite (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html,
# the aws-sig-v4-test-suite of 2015): its example credentials, time, region and service.
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "channels"
SUITE = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_TIME = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
SUITE_HOST = "example.amazonaws.com"


def _suite(method: str, url: str) -> dict[str, str]:
    return sign(
        method,
        url,
        {"Host": SUITE_HOST},
        b"",
        credentials=SUITE,
        region="us-east-1",
        service="service",
        now=SUITE_TIME,
    )


@pytest.mark.parametrize(
    ("case", "method", "query", "signature"),
    [
        ("get-vanilla", "GET", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("post-vanilla", "POST", "", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        (
            "get-vanilla-query-order-key-case",
            "GET",
            "?Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ],
)
def test_sigv4_matches_the_aws_test_suite(case: str, method: str, query: str, signature: str) -> None:
    headers = _suite(method, f"https://{SUITE_HOST}/{query}")
    assert headers["X-Amz-Date"] == "20150830T123600Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}"
    ), case


def test_sigv4_canonical_request_of_get_vanilla() -> None:
    request, signed = canonical_request(
        "GET", f"https://{SUITE_HOST}/", {"Host": SUITE_HOST, "X-Amz-Date": "20150830T123600Z"}, b""
    )
    assert signed == "host;x-amz-date"
    assert request == (
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_sigv4_signature_changes_with_the_body_and_carries_the_session_token() -> None:
    creds = AwsCredentials("AKID", "s3cr3t-value", "session-1")
    kw: dict[str, Any] = {"credentials": creds, "region": "us-east-1", "service": "aws-marketplace"}
    a = sign("POST", "https://h/", {}, b"{}", now=SUITE_TIME, **kw)
    b = sign("POST", "https://h/", {}, b"{ }", now=SUITE_TIME, **kw)
    assert a["Authorization"] != b["Authorization"]
    assert a["X-Amz-Security-Token"] == "session-1"
    assert "x-amz-security-token" in a["Authorization"]
    assert "s3cr3t-value" not in repr(creds) and "session-1" not in repr(creds)


TERMS_CONFIGURABLE = {
    "agreementId": "agmt-1",
    "acceptedTerms": [
        {"validityTerm": {"type": "ValidityTerm", "agreementDuration": "P12M"}},
        {
            "configurableUpfrontPricingTerm": {
                "type": "ConfigurableUpfrontPricingTerm",
                "currencyCode": "USD",
                "rateCards": [
                    {
                        "selector": {"type": "Duration", "value": "P1M"},
                        "rateCard": [{"dimensionKey": "seats", "price": "9.99"}],
                    },
                    {
                        "selector": {"type": "Duration", "value": "P12M"},
                        "rateCard": [
                            {"dimensionKey": "seats", "price": "99.90"},
                            {"dimensionKey": "storage_tb", "price": "0.10"},
                        ],
                    },
                ],
                "configuration": {
                    "selectorValue": "P12M",
                    "dimensions": [
                        {"dimensionKey": "seats", "dimensionValue": 3},
                        {"dimensionKey": "storage_tb", "dimensionValue": 7},
                    ],
                },
            }
        },
        {
            "usageBasedPricingTerm": {
                "currencyCode": "USD",
                "rateCards": [{"rateCard": [{"dimensionKey": "api", "price": "0.0001"}]}],
            }
        },
    ],
}


def _one(doc: Any, transport: dict[str, Any] | None = None) -> CanonicalOrderChange:
    result = normalize("aws_marketplace", json.dumps(doc).encode(), transport or {})
    [change] = result.changes
    return change


def test_agreement_terms_configurable_upfront_prices_exactly() -> None:
    change = _one(TERMS_CONFIGURABLE, {"known_status": "active"})
    assert change.action == "refresh" and change.channel_subscription_id == "agmt-1"
    assert (change.plan, change.quantity, change.currency) == ("seats", 3, "USD")
    assert change.unit_amount == "99.90"
    # 3 x 99.90 + 7 x 0.10, in Decimal: no float rounding
    assert Decimal(str(change.amount)) == Decimal("299.70") + Decimal("0.70")
    assert change.amount == "300.40"
    assert (change.amount_basis, change.billing_interval) == ("contract_commit", "P12M")


def test_agreement_terms_recurring_and_fixed_and_usage_only() -> None:
    recurring = _one(
        {
            "agreementId": "agmt-2",
            "acceptedTerms": [
                {"recurringPaymentTerm": {"currencyCode": "EUR", "billingPeriod": "Monthly", "price": "49.5"}}
            ],
        }
    )
    assert (recurring.amount, recurring.currency, recurring.amount_basis) == ("49.50", "EUR", "per_interval")
    assert recurring.billing_interval == "P1M" and recurring.plan is None
    fixed = _one(
        {
            "agreementId": "agmt-3",
            "acceptedTerms": [
                {"fixedUpfrontPricingTerm": {"currencyCode": "JPY", "price": "120000", "duration": "P1Y"}}
            ],
        }
    )
    assert (fixed.amount, fixed.amount_basis, fixed.billing_interval) == ("120000", "contract_commit", "P1Y")
    usage = normalize(
        "aws_marketplace",
        json.dumps(
            {"agreementId": "agmt-4", "acceptedTerms": TERMS_CONFIGURABLE["acceptedTerms"][2:]}
        ).encode(),  # type: ignore[index]
        {},
    )
    assert usage.changes == [] or usage.disposition != "apply"


def _agreement_change(plan: str | None = None) -> CanonicalOrderChange:
    return CanonicalOrderChange(
        action="create",
        phase="effective",
        channel="aws_marketplace",
        channel_subscription_id="agmt-1",
        customer=CanonicalCustomer(channel_customer_id="123456789012"),
        account=CanonicalAccount(channel_account_id="123456789012"),
        plan=plan,
        effective_at="2025-07-01T00:00:00.000Z",
        status_after="active",
    )


async def test_signed_get_agreement_terms_fills_the_prices_of_an_agreement() -> None:
    creds = AwsCredentials("AKIDTEST", "s3cr3t-key")
    with AwsStandIn(credentials=creds) as aws:
        assert isinstance(aws, AwsStandIn)
        aws.terms["agmt-1"] = {"acceptedTerms": TERMS_CONFIGURABLE["acceptedTerms"]}
        client = AwsMarketplace(aws.base_url, None, credentials=creds, backoff=())
        lookups = VendorLookups(aws=client)
        try:
            enriched = await lookups.enrich("aws_marketplace", _agreement_change(), "event-1", {})
        finally:
            await lookups.aclose()
        forged = AwsMarketplace(
            aws.base_url, None, credentials=AwsCredentials("AKIDTEST", "wrong"), backoff=()
        )
        try:
            with pytest.raises(VendorRefused) as refused:
                await forged.get_agreement_terms("agmt-1")
        finally:
            await forged.aclose()
    assert (enriched.plan, enriched.quantity, enriched.amount, enriched.currency) == (
        "seats",
        3,
        "300.40",
        "USD",
    )
    assert enriched.action == "create" and enriched.channel_subscription_id == "agmt-1"
    assert refused.value.status == 403
    [first, second] = aws.requests
    assert first.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    assert "/us-east-1/aws-marketplace/aws4_request" in first.headers["Authorization"]
    assert "x-amz-target" in first.headers["Authorization"]  # the operation is signed too
    assert second.route == "GetAgreementTerms"


def test_azure_webhook_operation_ids_and_findings() -> None:
    webhook = {"id": "op-1", "subscriptionId": "sub-1", "action": "ChangePlan"}
    assert azure_webhook_operation("azure_marketplace", json.dumps(webhook).encode()) == ("sub-1", "op-1")
    snapshot = {"id": "sub-1", "subscription": {"id": "sub-1"}}  # a resolve answer: not a webhook
    assert azure_webhook_operation("azure_marketplace", json.dumps(snapshot).encode()) is None
    assert azure_webhook_operation("gcp_marketplace", json.dumps(webhook).encode()) is None
    assert azure_webhook_operation("azure_marketplace", b'{"action": "Suspend"}') == ("", "")
    assert operation_finding("sub-1", {"id": "op-1", "subscriptionId": "sub-1"}) is None
    unknown = operation_finding("sub-1", None)
    other = operation_finding("sub-1", {"id": "op-1", "subscriptionId": "sub-2"})
    assert unknown is not None and unknown.code == "SIGNATURE_INVALID"
    assert other is not None and other.code == "SIGNATURE_INVALID"
    assert operation_finding("", {"id": "op-1"}) is not None


def test_som_intake_normalize_verify_runs_the_jwt_check_when_keys_are_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.settings import get_settings

    now = 1_760_000_000
    issuer, audience = "https://sts.windows.net/tenant-1/", "app-1"
    claims = {"iss": issuer, "aud": audience, "iat": now - 10, "nbf": now - 10, "exp": now + 3600}
    payload = str(FIXTURES / "azure" / "05-cancel.json")
    good, forged, none = (tmp_path / f"{n}.json" for n in ("good", "forged", "none"))
    good.write_text(json.dumps({"headers": {"Authorization": f"Bearer {jwt(claims)}"}}))
    forged.write_text(json.dumps({"headers": {"Authorization": f"Bearer {jwt(claims, 'other')}"}}))
    none.write_text(json.dumps({"headers": {}}))
    monkeypatch.setenv("SOM_AZURE_WEBHOOK_KEYS", jwks())
    monkeypatch.setenv("SOM_AZURE_WEBHOOK_AUDIENCE", audience)
    monkeypatch.setenv("SOM_AZURE_WEBHOOK_ISSUERS", issuer)
    get_settings.cache_clear()

    def cli(*args: str) -> tuple[int, list[dict[str, Any]]]:
        result = CliRunner().invoke(
            app,
            [
                "intake",
                "normalize",
                "--channel",
                "azure_marketplace",
                payload,
                "--received-at",
                str(now),
                *args,
            ],
        )
        return result.exit_code, json.loads(result.stdout)

    try:
        assert cli("--verify", "--transport", str(good))[0] == 0
        code, out = cli("--verify", "--transport", str(forged))
        assert code == 1 and out[0]["reasons"][0]["code"] == "SIGNATURE_INVALID"
        code, out = cli("--verify", "--transport", str(none))
        assert code == 1 and out[0]["reasons"][0]["code"] == "SIGNATURE_MISSING"
        # without --verify the HMAC secrets alone are checked (none for Azure): the payload's meaning
        assert cli("--transport", str(forged))[0] == 0
        assert cli("--no-verify", "--transport", str(forged))[0] == 0
    finally:
        get_settings.cache_clear()


def _azure_create(purchaser: str) -> bytes:
    doc = json.loads((FIXTURES / "azure" / "01-create.json").read_text())
    doc["subscription"]["purchaser"]["emailId"] = purchaser
    return json.dumps(doc).encode()


def test_azure_names_beneficiary_owner_and_purchaser_admin_on_the_create_command() -> None:
    from services.intake.pipeline import interpret
    from shared.catalog import cached_catalog

    body = _azure_create("  Procurement@Tidewater-Analytics.example ")
    [change] = normalize("azure_marketplace", body, {}).changes
    assert [(u.email, u.role, u.source) for u in change.users] == [
        ("priya.raman@tidewater-analytics.example", "owner", "beneficiary"),
        ("procurement@tidewater-analytics.example", "admin", "purchaser"),
    ]
    assert "users" not in change.model_dump(mode="json")  # the canonical document stays as FORMATS.md says
    [verdict] = interpret("azure_marketplace", body, {}, catalog=cached_catalog(None)).verdicts
    assert verdict.params is not None and verdict.params.command == "create"
    assert [(u.email, u.role) for u in verdict.params.users or []] == [
        ("priya.raman@tidewater-analytics.example", "owner"),
        ("procurement@tidewater-analytics.example", "admin"),
    ]
    # the same person as purchaser and beneficiary (the sample) is one owner
    [same] = normalize("azure_marketplace", (FIXTURES / "azure" / "01-create.json").read_bytes(), {}).changes
    assert [(u.email, u.role) for u in same.users] == [("priya.raman@tidewater-analytics.example", "owner")]


def test_users_merge_keeps_the_strongest_role_and_ignores_non_addresses() -> None:
    from services.intake.domain.users import merged, named

    users = merged(
        [
            named("a@x.example", "reader", "customer"),
            named("not-an-address", "owner", "x"),
            named(None, "owner", "x"),
            named("A@X.example", "admin", "purchaser"),
            named("b@x.example", "editor", "y"),
        ]
    )
    assert [(u.email, u.role) for u in users] == [("a@x.example", "admin"), ("b@x.example", "editor")]


def test_omnistrate_root_user_is_the_owner_and_a_direct_customer_email_too() -> None:
    from services.intake.domain.users import subscription_users

    [omni] = normalize("omnistrate", (FIXTURES / "omnistrate" / "11-refresh.json").read_bytes(), {}).changes
    assert [(u.email, u.role, u.source) for u in omni.users] == [
        ("suger-aws-7c2e90f1@marketplace-buyers.omnistrate.example", "owner", "root_user")
    ]
    [direct] = normalize("direct", (FIXTURES / "direct" / "01-create.json").read_bytes(), {}).changes
    users = subscription_users(direct)
    assert direct.customer.email and [(u.email, u.role, u.source) for u in users] == [
        (direct.customer.email.strip().lower(), "owner", "customer")
    ]


@pytest.mark.parametrize(("mode", "jwt_checked"), [("jwt", True), ("both", True), ("get_operation", False)])
def test_azure_webhook_check_setting_chooses_jwt_get_operation_or_both(mode: str, jwt_checked: bool) -> None:
    from services.intake.pipeline import channel_auth
    from services.intake.vendors.wiring import vendor_set
    from shared.settings import Settings

    base = {"azure_webhook_keys": jwks(), "azure_webhook_check": mode}
    auth = channel_auth(Settings(**base))  # type: ignore[arg-type]
    assert ("azure_marketplace" in auth.jwt) is jwt_checked
    if mode == "jwt":
        assert vendor_set(Settings(**base)).azure_operations is None  # type: ignore[arg-type]
        return
    with pytest.raises(ValueError, match="azure_fulfillment_base_url"):
        vendor_set(Settings(**base))  # type: ignore[arg-type]
    with_api = Settings(**base, azure_fulfillment_base_url="https://marketplaceapi.microsoft.example")  # type: ignore[arg-type]
    assert vendor_set(with_api).azure_operations is not None
