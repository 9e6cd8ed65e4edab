"""Vendor lookup responses through the normalizer entry point and ``som intake normalize`` (8a rule 9),
the retrying vendor client against a local stand-in, and the per-event lookup cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from intake_samples import FIXTURES
from typer.testing import CliRunner

from services.intake.domain.normalizers import normalize
from services.intake.pipeline import interpret
from services.intake.vendors.clients import AwsMarketplace, GcpProcurement, ShopifyAdmin
from services.intake.vendors.http import VendorHttp, VendorRefused, VendorUnavailable
from services.intake.vendors.lookups import VendorLookups
from shared.catalog import cached_catalog
from som.cli import app
from tests.standins.vendors import AwsStandIn, GcpStandIn, ShopifyStandIn

ENTITLEMENT = {
    "name": "providers/prov-1/entitlements/ent-42",
    "account": "providers/prov-1/accounts/acct-7",
    "provider": "prov-1",
    "product": "providers/prov-1/offers/private-offer-9",  # an offer path: not a product (rule 7)
    "plan": "scale-monthly",
    "state": "ENTITLEMENT_ACTIVE",
    "createTime": "2025-05-19T08:14:02.481337Z",
    "updateTime": "2025-05-20T09:00:00.123999Z",
}
CONTRACT = {
    "data": {
        "subscriptionContract": {
            "id": "gid://shopify/SubscriptionContract/77",
            "status": "ACTIVE",
            "currencyCode": "JPY",
            "billingPolicy": {"interval": "MONTH", "intervalCount": 2},
            "customer": {"id": "gid://shopify/Customer/5", "email": "kay@shop.example"},
            "lines": {
                "nodes": [
                    {
                        "quantity": 12,
                        "currentPrice": {"amount": "1500.0", "currencyCode": "JPY"},
                        "sku": "FERN-ENTERPRISE",
                    },
                    {
                        "quantity": 1,
                        "currentPrice": {"amount": "200", "currencyCode": "JPY"},
                        "sku": "GRINDER",
                    },
                ]
            },
        }
    }
}


USD_CONTRACT = json.loads(
    json.dumps(CONTRACT)
    .replace("JPY", "USD")
    .replace('"intervalCount": 2', '"intervalCount": 1')
    .replace('"1500.0"', '"49.00"')
)


def _one(channel: str, doc: Any, transport: dict[str, Any] | None = None) -> Any:
    [change] = normalize(channel, json.dumps(doc).encode(), transport).changes
    return change


def test_gcp_entitlement_resource_maps_by_what_the_receiver_knows() -> None:
    created = _one("gcp_marketplace", ENTITLEMENT)
    assert (created.action, created.phase, created.status_after) == ("create", "effective", "active")
    assert (created.channel_subscription_id, created.plan, created.product) == (
        "ent-42",
        "scale-monthly",
        None,
    )
    assert (
        created.account.channel_account_id == "acct-7" and created.effective_at == "2025-05-20T09:00:00.123Z"
    )
    activated = _one("gcp_marketplace", ENTITLEMENT, {"known_status": "pending"})
    assert activated.action == "activate"
    refreshed = _one("gcp_marketplace", ENTITLEMENT, {"known_status": "active"})
    assert refreshed.action == "refresh"
    named = _one("gcp_marketplace", {**ENTITLEMENT, "productExternalName": "tessellate-data"})
    assert named.product == "tessellate-data"
    pathed = _one("gcp_marketplace", {**ENTITLEMENT, "product": "providers/p/products/lens"})
    assert pathed.product == "lens"


def test_gcp_pending_plan_change_with_a_future_start_is_a_scheduled_change() -> None:
    doc = {
        **ENTITLEMENT,
        "state": "ENTITLEMENT_PENDING_PLAN_CHANGE",
        "newPendingPlan": "starter-monthly",
        "newOfferStartTime": "2025-07-01T00:00:00Z",
    }
    change = _one("gcp_marketplace", doc, {"known_status": "active"})
    assert (change.action, change.phase, change.plan) == ("change_plan", "scheduled", "starter-monthly")
    assert change.effective_at == "2025-07-01T00:00:00.000Z"
    cancelling = _one("gcp_marketplace", {**ENTITLEMENT, "state": "ENTITLEMENT_PENDING_CANCELLATION"})
    assert cancelling.status_after == "cancel_scheduled"  # rule 10


def test_shopify_graphql_contract_gives_plan_quantity_and_exact_amounts() -> None:
    change = _one("shopify", CONTRACT, {"headers": {"X-Shopify-Shop-Domain": "fern.myshopify.com"}})
    assert (change.action, change.plan, change.quantity, change.billing_interval) == (
        "create",
        "FERN-ENTERPRISE",
        12,
        "P2M",
    )
    # JPY has no minor unit: 12 x 1500 + 1 x 200
    assert (change.currency, change.unit_amount, change.amount) == ("JPY", "1500", "18200")
    assert (
        change.customer.email == "kay@shop.example"
        and change.account.channel_account_id == "fern.myshopify.com"
    )
    missing = normalize("shopify", json.dumps({"data": {"subscriptionContract": None}}).encode())
    assert missing.disposition == "drop_ignored"


def test_stackit_list_page_yields_one_change_per_subscription() -> None:
    first = json.loads((FIXTURES / "stackit/01-create.json").read_text())
    second = {
        **first,
        "subscriptionId": "0000aaaa-0000-4000-8000-000000000002",
        "lifecycleState": "SUBSCRIPTION_ACTIVE",
    }
    page = {"items": [first, second], "cursor": "abc", "limit": 2}
    known = {"known_states": {second["subscriptionId"]: "SUBSCRIPTION_PENDING"}}
    result = normalize("stackit_marketplace", json.dumps(page).encode(), known)
    assert [c.channel_subscription_id for c in result.changes] == [
        first["subscriptionId"],
        second["subscriptionId"],
    ]
    assert result.changes[1].action == "activate"  # known as pending, now active


def test_aws_get_entitlements_names_dimension_and_quantity() -> None:
    doc = {
        "Entitlements": [
            {
                "ProductCode": "prodcode",
                "CustomerIdentifier": "cust-1",
                "CustomerAWSAccountId": "123456789012",
                "Dimension": "enterprise_tier",
                "Value": {"IntegerValue": 12},
                "ExpirationDate": 1893456000,
            }
        ]
    }
    change = _one("aws_marketplace", doc)
    assert (change.channel_subscription_id, change.plan, change.quantity) == (
        "prodcode:cust-1",
        "enterprise_tier",
        12,
    )
    [verdict] = interpret(
        "aws_marketplace", json.dumps(doc).encode(), None, catalog=cached_catalog(None)
    ).verdicts
    assert verdict.plan_id == "enterprise"


@pytest.mark.parametrize(
    ("channel", "doc", "plan_id"),
    [("gcp_marketplace", ENTITLEMENT, "enterprise"), ("shopify", USD_CONTRACT, "enterprise")],
)
def test_som_intake_normalize_accepts_lookup_responses(
    tmp_path: Path, channel: str, doc: Any, plan_id: str
) -> None:
    payload = tmp_path / "lookup.json"
    payload.write_text(json.dumps(doc))
    result = CliRunner().invoke(app, ["intake", "normalize", "--channel", channel, str(payload)])
    [entry] = json.loads(result.stdout)
    assert (entry["disposition"], entry["plan_id"], entry["command"]) == ("apply", plan_id, "create")


def test_som_intake_normalize_accepts_a_stackit_page(tmp_path: Path) -> None:
    first = json.loads((FIXTURES / "stackit/01-create.json").read_text())
    second = {**first, "subscriptionId": "0000aaaa-0000-4000-8000-000000000003"}
    payload = tmp_path / "page.json"
    payload.write_text(json.dumps({"items": [first, second]}))
    result = CliRunner().invoke(app, ["intake", "normalize", "--channel", "stackit", str(payload)])
    assert [e["change"]["channel_subscription_id"] for e in json.loads(result.stdout)] == [
        first["subscriptionId"],
        second["subscriptionId"],
    ]


@pytest.fixture
def gcp() -> Iterator[GcpStandIn]:
    with GcpStandIn(token="secret-token-123", provider="prov-1") as server:
        assert isinstance(server, GcpStandIn)
        yield server


async def test_vendor_http_retries_a_503_then_succeeds(gcp: GcpStandIn) -> None:
    gcp.add_entitlement("ent-1", "scale-monthly")
    gcp.fail("get", 2)
    client = GcpProcurement(gcp.base_url, "secret-token-123", "prov-1", backoff=(0.01, 0.01))
    try:
        doc = json.loads(await client.get_entitlement("ent-1"))
    finally:
        await client.aclose()
    assert doc["plan"] == "scale-monthly" and len(gcp.routed("get")) == 3


async def test_vendor_http_gives_up_transiently_and_refuses_on_4xx(gcp: GcpStandIn) -> None:
    gcp.add_entitlement("ent-1", "scale-monthly")
    gcp.hang_seconds = 1.0
    gcp.hang("get", 2)
    http = VendorHttp(
        gcp.base_url, headers={"Authorization": "Bearer secret-token-123"}, timeout=0.2, backoff=(0.01,)
    )
    try:
        with pytest.raises(VendorUnavailable) as unavailable:
            await http.request("GET", "/v1/providers/prov-1/entitlements/ent-1")
        with pytest.raises(VendorRefused) as refused:
            await http.request("GET", "/v1/providers/prov-1/entitlements/nope")
    finally:
        await http.aclose()
    assert refused.value.status == 404
    assert "secret-token-123" not in str(unavailable.value) + str(
        refused.value
    )  # credentials never in errors


async def test_lookup_fills_the_plan_caches_per_event_and_never_defaults(gcp: GcpStandIn) -> None:
    event = json.loads((FIXTURES / "gcp/01-create.json").read_text())
    eid = event["entitlement"]["id"]
    [change] = normalize("gcp_marketplace", json.dumps(event).encode()).changes
    assert change.plan is None
    lookups = VendorLookups(gcp=GcpProcurement(gcp.base_url, "secret-token-123", "prov-1", backoff=(0.01,)))
    try:
        with pytest.raises(VendorUnavailable):  # the vendor does not know it yet: retry, never a default plan
            await lookups.enrich("gcp_marketplace", change, "event-1", {})
        gcp.add_entitlement(eid, "scale-monthly")
        filled = await lookups.enrich("gcp_marketplace", change, "event-1", {})
        again = await lookups.enrich("gcp_marketplace", change, "event-1", {})  # a retry of the same event
    finally:
        await lookups.aclose()
    assert filled.plan == again.plan == "scale-monthly"
    assert (filled.action, filled.phase, filled.channel_event_id) == (
        change.action,
        change.phase,
        change.channel_event_id,
    )
    assert len(gcp.routed("get")) == 2  # one miss, one hit; the retry came from the cache


async def test_shopify_and_aws_lookups_through_their_stand_ins() -> None:
    with ShopifyStandIn() as shop, AwsStandIn(token="aws-t") as aws:
        assert isinstance(shop, ShopifyStandIn) and isinstance(aws, AwsStandIn)
        shop.add_contract("gid://shopify/SubscriptionContract/9", "FERN-ENTERPRISE", 12, "30.00")
        aws.add_entitlement("prodcode", "cust-9", "enterprise_tier", 17)
        lookups = VendorLookups(
            shopify=ShopifyAdmin(shop.base_url, "shpat", backoff=(0.01,)),
            aws=AwsMarketplace(aws.base_url, "aws-t", backoff=(0.01,)),
        )
        body = json.dumps(
            {"admin_graphql_api_id": "gid://shopify/SubscriptionContract/9", "status": "active"}
        ).encode()
        transport = {"headers": {"X-Shopify-Topic": "subscription_contracts/create"}}
        [webhook] = normalize("shopify", body, transport).changes
        sns = json.dumps(
            {"action": "subscribe-success", "customer-identifier": "cust-9", "product-code": "prodcode"}
        ).encode()
        [notice] = normalize("aws_marketplace", sns).changes
        try:
            contract = await lookups.enrich("shopify", webhook, "e1", transport)
            entitled = await lookups.enrich("aws_marketplace", notice, "e2", {})
        finally:
            await lookups.aclose()
        assert shop.requests[0].headers.get("X-Shopify-Access-Token") == "shpat"
    assert (contract.plan, contract.quantity, contract.amount) == ("FERN-ENTERPRISE", 12, "360.00")
    assert (entitled.plan, entitled.quantity) == ("enterprise_tier", 17)


async def test_a_refresh_the_vendor_knows_nothing_about_stays_as_it_came() -> None:
    with AwsStandIn() as aws:
        assert isinstance(aws, AwsStandIn)
        lookups = VendorLookups(aws=AwsMarketplace(aws.base_url, None, backoff=(0.01,)))
        notice = json.dumps(
            {"action": "entitlement-updated", "customer-identifier": "gone-1", "product-code": "prodcode"}
        ).encode()
        [refresh] = normalize("aws_marketplace", notice).changes
        try:
            assert await lookups.enrich("aws_marketplace", refresh, "e1", {}) == refresh
        finally:
            await lookups.aclose()
        assert len(aws.routed("GetEntitlements")) == 1
