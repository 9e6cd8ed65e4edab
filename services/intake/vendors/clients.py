"""One async client per marketplace vendor API, on :class:`~services.intake.vendors.http.VendorHttp`.

Lookups return the vendor's response as bytes, so that the channel's normalizer reads it like any
other payload of the channel (FORMATS.md 8a rule 9). Fulfilment calls take a
:class:`~services.intake.domain.fulfilment.VendorCall`; ``confirm`` asks the vendor whether a call made
before a crash already took effect (see ``docs/intake-vendors.md``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from services.intake.domain.fulfilment import VendorCall
from services.intake.vendors.http import VendorHttp, VendorRefused, bearer
from services.intake.vendors.sigv4 import AwsCredentials, SigV4Auth


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


class FulfilmentClient(Protocol):
    """What the delivery task needs of a vendor client."""

    async def perform(self, call: VendorCall) -> dict[str, Any]:
        """Make the call; the vendor's answer (recorded with the acknowledgement)."""
        ...

    async def confirm(self, call: VendorCall) -> bool | None:
        """True when the call already took effect at the vendor, False when not, None: cannot tell."""
        ...

    async def aclose(self) -> None:
        """Close the client."""
        ...


class AzureFulfillment:
    """Microsoft SaaS Fulfillment API v2 (``api-version=2018-08-31``)."""

    API_VERSION = "2018-08-31"

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 10.0,
        backoff: Sequence[float] = (0.2, 1.0, 3.0),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = VendorHttp(
            base_url, headers=bearer(token), timeout=timeout, backoff=backoff, transport=transport
        )
        self.params = {"api-version": self.API_VERSION}

    async def resolve(self, marketplace_token: str) -> bytes:
        """``POST /api/saas/subscriptions/resolve`` with the landing page's token."""
        doc = await self.http.json(
            "POST",
            "/api/saas/subscriptions/resolve",
            params=self.params,
            headers={"x-ms-marketplace-token": marketplace_token},
        )
        return _bytes(doc)

    async def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        """``GET /api/saas/subscriptions/{id}``."""
        doc = await self.http.json("GET", f"/api/saas/subscriptions/{subscription_id}", params=self.params)
        return doc if isinstance(doc, dict) else {}

    async def get_operation(self, subscription_id: str, operation_id: str) -> dict[str, Any]:
        """``GET /api/saas/subscriptions/{id}/operations/{operationId}``."""
        doc = await self.http.json(
            "GET", f"/api/saas/subscriptions/{subscription_id}/operations/{operation_id}", params=self.params
        )
        return doc if isinstance(doc, dict) else {}

    async def perform(self, call: VendorCall) -> dict[str, Any]:
        """``activate`` or ``PATCH`` an operation with ``Success`` / ``Failure``."""
        sid = call.channel_subscription_id
        if call.action == "activate":
            body = {k: v for k, v in call.body.items() if k in ("planId", "quantity") and v is not None}
            await self.http.request(
                "POST", f"/api/saas/subscriptions/{sid}/activate", params=self.params, json=body
            )
            return {"activated": sid}
        if call.action == "patch_operation":
            status = str(call.body.get("status"))
            await self.http.request(
                "PATCH",
                f"/api/saas/subscriptions/{sid}/operations/{call.operation_id}",
                params=self.params,
                json={"status": status},
            )
            return {"operation": call.operation_id, "status": status}
        raise ValueError(f"unknown Azure fulfilment action {call.action!r}")

    async def confirm(self, call: VendorCall) -> bool | None:
        """Activated: the subscription is ``Subscribed``; PATCHed: the operation is no longer in progress."""
        sid = call.channel_subscription_id
        if call.action == "activate":
            sub = await self.get_subscription(sid)
            return str(sub.get("saasSubscriptionStatus") or "").strip() == "Subscribed"
        op = await self.get_operation(sid, call.operation_id)
        return str(op.get("status") or "").strip() in ("Succeeded", "Failed", "Conflict")

    async def aclose(self) -> None:
        """Close the client."""
        await self.http.aclose()


class GcpProcurement:
    """Google Cloud Commerce Partner Procurement API, ``providers.entitlements``."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        provider_id: str,
        *,
        timeout: float = 10.0,
        backoff: Sequence[float] = (0.2, 1.0, 3.0),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = VendorHttp(
            base_url, headers=bearer(token), timeout=timeout, backoff=backoff, transport=transport
        )
        self.provider_id = provider_id

    def _path(self, entitlement_id: str) -> str:
        return f"/v1/providers/{self.provider_id}/entitlements/{quote(entitlement_id, safe='')}"

    async def get_entitlement(self, entitlement_id: str) -> bytes:
        """``providers.entitlements.get``: the entitlement resource."""
        return _bytes(await self.http.json("GET", self._path(entitlement_id)))

    async def perform(self, call: VendorCall) -> dict[str, Any]:
        """``:approve`` / ``:reject`` an entitlement, ``:approvePlanChange`` / ``:rejectPlanChange``."""
        verb = str(call.body.get("verb"))
        body = {k: v for k, v in call.body.items() if k != "verb" and v is not None}
        if call.action == "decision" and verb in ("approve", "reject"):
            name = verb
        elif call.action == "plan_change_decision" and verb in ("approve", "reject"):
            name = f"{verb}PlanChange"
        else:
            raise ValueError(f"unknown GCP fulfilment call {call.action!r} {verb!r}")
        doc = await self.http.json("POST", f"{self._path(call.channel_subscription_id)}:{name}", json=body)
        return {"verb": name, "answer": doc}

    async def confirm(self, call: VendorCall) -> bool | None:
        """The entitlement no longer waits for this decision."""
        doc = json.loads(await self.get_entitlement(call.channel_subscription_id))
        state = str(doc.get("state") or "") if isinstance(doc, dict) else ""
        if call.action == "decision":
            return state != "ENTITLEMENT_ACTIVATION_REQUESTED"
        return state != "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL"

    async def aclose(self) -> None:
        """Close the client."""
        await self.http.aclose()


class AwsMarketplace:
    """AWS Marketplace Entitlement, Agreement and Metering services (JSON 1.1 protocol, ``X-Amz-Target``).

    With ``credentials`` every request is SigV4-signed (:mod:`services.intake.vendors.sigv4`, signing
    name ``aws-marketplace``); without, ``token`` is sent as a bearer header (a signing proxy in front).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        credentials: AwsCredentials | None = None,
        region: str = "us-east-1",
        service: str = "aws-marketplace",
        timeout: float = 10.0,
        backoff: Sequence[float] = (0.2, 1.0, 3.0),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        auth = SigV4Auth(credentials, region=region, service=service) if credentials else None
        self.http = VendorHttp(
            base_url,
            headers={} if credentials else bearer(token),
            timeout=timeout,
            backoff=backoff,
            transport=transport,
            auth=auth,
        )

    async def _rpc(self, target: str, body: dict[str, Any]) -> Any:
        return await self.http.json(
            "POST",
            "/",
            json=body,
            headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
        )

    async def get_entitlements(self, product_code: str, customer_identifier: str) -> bytes:
        """``GetEntitlements`` of one customer of one product (every page)."""
        entitlements: list[Any] = []
        token: str | None = None
        for _ in range(100):
            body: dict[str, Any] = {
                "ProductCode": product_code,
                "Filter": {"CUSTOMER_IDENTIFIER": [customer_identifier]},
            }
            if token:
                body["NextToken"] = token
            page = await self._rpc("AWSMPEntitlementService.GetEntitlements", body)
            page = page if isinstance(page, dict) else {}
            entitlements.extend(page.get("Entitlements") or [])
            token = page.get("NextToken")
            if not token:
                break
        return _bytes({"Entitlements": entitlements})

    async def get_agreement_terms(self, agreement_id: str) -> bytes:
        """``GetAgreementTerms`` (prices of the agreement, every page), with the ``agreementId`` added so
        the AWS normalizer can read the answer on its own."""
        accepted: list[Any] = []
        token: str | None = None
        for _ in range(100):
            body: dict[str, Any] = {"agreementId": agreement_id}
            if token:
                body["nextToken"] = token
            page = await self._rpc("AWSMPCommerceService_v20200301.GetAgreementTerms", body)
            page = page if isinstance(page, dict) else {}
            accepted.extend(page.get("acceptedTerms") or [])
            token = page.get("nextToken")
            if not token:
                break
        return _bytes({"agreementId": agreement_id, "acceptedTerms": accepted})

    async def perform(self, call: VendorCall) -> dict[str, Any]:
        """``BatchMeterUsage`` with the call's usage record (idempotent by usage record at AWS)."""
        if call.action != "meter_final":
            raise ValueError(f"unknown AWS fulfilment action {call.action!r}")
        doc = await self._rpc("AWSMPMeteringService.BatchMeterUsage", dict(call.body))
        doc = doc if isinstance(doc, dict) else {}
        if doc.get("UnprocessedRecords"):
            raise VendorRefused("BatchMeterUsage left records unprocessed", 400, json.dumps(doc)[:500])
        return doc

    async def confirm(self, call: VendorCall) -> bool | None:
        """AWS offers no read of a metering record; the call is idempotent, so it is made again."""
        return None

    async def aclose(self) -> None:
        """Close the client."""
        await self.http.aclose()


CONTRACT_QUERY = """query contract($id: ID!) { subscriptionContract(id: $id) {
  id status currencyCode nextBillingDate
  billingPolicy { interval intervalCount }
  customer { id email }
  lines(first: 50) { nodes { quantity currentPrice { amount currencyCode }
    sellingPlanId sellingPlanName productId variantId sku title } } } }"""


class ShopifyAdmin:
    """Shopify Admin GraphQL API (``X-Shopify-Access-Token``)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        api_version: str = "2025-07",
        timeout: float = 10.0,
        backoff: Sequence[float] = (0.2, 1.0, 3.0),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"X-Shopify-Access-Token": token} if token else {}
        self.http = VendorHttp(
            base_url, headers=headers, timeout=timeout, backoff=backoff, transport=transport
        )
        self.path = f"/admin/api/{api_version}/graphql.json"

    async def subscription_contract(self, contract_gid: str) -> bytes:
        """``subscriptionContract(id)`` with lines and prices, as the GraphQL response."""
        doc = await self.http.json(
            "POST", self.path, json={"query": CONTRACT_QUERY, "variables": {"id": contract_gid}}
        )
        return _bytes(doc)

    async def aclose(self) -> None:
        """Close the client."""
        await self.http.aclose()


class StackitVendor:
    """STACKIT Marketplace vendor API: one list page, get, approve, reject."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        project_id: str,
        *,
        timeout: float = 10.0,
        backoff: Sequence[float] = (0.2, 1.0, 3.0),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = VendorHttp(
            base_url, headers=bearer(token), timeout=timeout, backoff=backoff, transport=transport
        )
        self.path = f"/v1/vendors/projects/{project_id}/subscriptions"

    async def list_page(self, cursor: str | None = None, limit: int = 100) -> bytes:
        """One ``ListSubscriptions`` page ``{items, cursor}``."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return _bytes(await self.http.json("GET", self.path, params=params))

    async def perform(self, call: VendorCall) -> dict[str, Any]:
        """``POST .../approve`` or ``POST .../reject``."""
        verb = str(call.body.get("verb"))
        if call.action != "decision" or verb not in ("approve", "reject"):
            raise ValueError(f"unknown STACKIT fulfilment call {call.action!r} {verb!r}")
        body = {"reason": call.body["reason"]} if verb == "reject" and call.body.get("reason") else None
        await self.http.request("POST", f"{self.path}/{call.channel_subscription_id}/{verb}", json=body)
        return {"decision": verb}

    async def confirm(self, call: VendorCall) -> bool | None:
        """The subscription is no longer ``SUBSCRIPTION_PENDING``."""
        doc = await self.http.json("GET", f"{self.path}/{call.channel_subscription_id}")
        state = str(doc.get("lifecycleState") or "") if isinstance(doc, dict) else ""
        return state != "SUBSCRIPTION_PENDING"

    async def aclose(self) -> None:
        """Close the client."""
        await self.http.aclose()
