"""Stand-ins of Azure SaaS Fulfillment, GCP Procurement, AWS Marketplace, Shopify Admin GraphQL, STACKIT."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from services.intake.vendors.sigv4 import AwsCredentials, sign
from tests.standins.base import Answer, Request, StandIn

_AZ = re.compile(
    r"^/api/saas/subscriptions/(?P<sid>[^/]+)(?:/(?P<verb>activate|operations)(?:/(?P<op>[^/]+))?)?$"
)


@dataclass
class AzureStandIn(StandIn):
    """SaaS Fulfillment API v2: subscriptions and operations; an operation is PATCHed once (then 409)."""

    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def add_subscription(self, sid: str, plan: str, quantity: int | None) -> None:
        """A subscription waiting for activation."""
        self.subscriptions[sid] = {
            "id": sid,
            "planId": plan,
            "quantity": quantity,
            "saasSubscriptionStatus": "PendingFulfillmentStart",
        }

    def add_operation(self, sid: str, op: str, action: str) -> None:
        """An operation (ChangePlan, ChangeQuantity, Reinstate) waiting for its PATCH."""
        self.operations[(sid, op)] = {
            "id": op,
            "subscriptionId": sid,
            "action": action,
            "status": "InProgress",
        }

    def route(self, req: Request) -> str:
        m = _AZ.match(req.path)
        if not m:
            return "unknown"
        if m["verb"] == "activate":
            return "activate"
        if m["verb"] == "operations":
            return "patch_operation" if req.method == "PATCH" else "get_operation"
        return "resolve" if m["sid"] == "resolve" else "get_subscription"

    def answer(self, req: Request) -> Answer:
        if req.query.get("api-version") != ["2018-08-31"]:
            return 400, {"error": "api-version missing"}
        m = _AZ.match(req.path)
        assert m is not None
        sid, op = m["sid"], m["op"]
        if req.route == "get_subscription":
            sub = self.subscriptions.get(sid)
            return (200, sub) if sub else (404, {"error": "not found"})
        if req.route == "activate":
            sub = self.subscriptions.get(sid)
            if sub is None:
                return 404, {"error": "not found"}
            # Activating an activated subscription is answered 200 again: it changes nothing.
            if sub["saasSubscriptionStatus"] != "Subscribed":
                sub["saasSubscriptionStatus"] = "Subscribed"
                sub["planId"] = (req.body or {}).get("planId", sub["planId"])
                self.acks.append(("activate", sid))
            return 200, None
        operation = self.operations.get((sid, op or ""))
        if operation is None:
            return 404, {"error": "operation not found"}
        if req.route == "get_operation":
            return 200, operation
        if operation["status"] != "InProgress":
            return 409, {"error": f"operation already {operation['status']}"}
        verdict = (req.body or {}).get("status")
        if verdict not in ("Success", "Failure"):
            return 400, {"error": "status must be Success or Failure"}
        operation["status"] = "Succeeded" if verdict == "Success" else "Failed"
        self.acks.append(("patch", op or "", verdict))
        return 200, None


_GCP = re.compile(r"^/v1/providers/(?P<p>[^/]+)/entitlements/(?P<id>[^/:]+)(?::(?P<verb>\w+))?$")


@dataclass
class GcpStandIn(StandIn):
    """Partner Procurement ``providers.entitlements``: get, approve, reject, approve/rejectPlanChange."""

    provider: str = "provider-1"
    entitlements: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_entitlement(
        self, eid: str, plan: str, state: str = "ENTITLEMENT_ACTIVATION_REQUESTED", **extra: Any
    ) -> None:
        """An entitlement resource as ``entitlements.get`` returns it."""
        self.entitlements[eid] = {
            "name": f"providers/{self.provider}/entitlements/{eid}",
            "account": f"providers/{self.provider}/accounts/acct-{eid[:8]}",
            "provider": self.provider,
            "productExternalName": "tessellate-data",
            "plan": plan,
            "state": state,
            "createTime": "2025-05-19T08:14:02.481337Z",
            "updateTime": "2025-05-19T08:14:02.481337Z",
            **extra,
        }

    def route(self, req: Request) -> str:
        m = _GCP.match(req.path)
        if not m:
            return "unknown"
        return m["verb"] or "get"

    def answer(self, req: Request) -> Answer:
        m = _GCP.match(req.path)
        if not m or m["p"] != self.provider:
            return 404, {"error": {"code": 404, "status": "NOT_FOUND"}}
        ent = self.entitlements.get(m["id"])
        if ent is None:
            return 404, {"error": {"code": 404, "status": "NOT_FOUND"}}
        verb, body = req.route, req.body or {}
        if verb == "get":
            return 200, ent
        if verb in ("approve", "reject"):
            if ent["state"] != "ENTITLEMENT_ACTIVATION_REQUESTED":
                return 400, {"error": {"code": 400, "status": "FAILED_PRECONDITION"}}
            ent["state"] = "ENTITLEMENT_ACTIVE" if verb == "approve" else "ENTITLEMENT_CANCELLED"
            self.acks.append((verb, m["id"]))
            return 200, {}
        if verb in ("approvePlanChange", "rejectPlanChange"):
            pending = ent.get("newPendingPlan")
            if (
                ent["state"] != "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL"
                or body.get("pendingPlanName") != pending
            ):
                return 400, {"error": {"code": 400, "status": "FAILED_PRECONDITION"}}
            if verb == "approvePlanChange":
                ent["plan"] = pending
            ent["state"] = "ENTITLEMENT_ACTIVE"
            ent.pop("newPendingPlan", None)
            self.acks.append((verb, m["id"], str(pending)))
            return 200, {}
        return 404, {"error": {"code": 404, "status": "NOT_FOUND"}}


@dataclass
class AwsStandIn(StandIn):
    """GetEntitlements and BatchMeterUsage (a usage record counts once: customer, dimension, hour)."""

    entitlements: list[dict[str, Any]] = field(default_factory=list)
    metered: dict[tuple[str, str, int], int] = field(default_factory=dict)
    # set: every request must carry a valid SigV4 signature of these credentials (else 403)
    credentials: AwsCredentials | None = None
    region: str = "us-east-1"
    service: str = "aws-marketplace"
    terms: dict[str, dict[str, Any]] = field(default_factory=dict)

    def signature_ok(self, req: Request) -> bool:
        """Recompute the request's SigV4 signature from what arrived and compare."""
        assert self.credentials is not None
        headers = {k.lower(): v for k, v in req.headers.items()}
        auth = headers.get("authorization", "")
        m = re.match(
            r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
            r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$",
            auth,
        )
        if not m or m[1] != self.credentials.access_key_id or (m[3], m[4]) != (self.region, self.service):
            return False
        names = m[5].split(";")
        if "host" not in names or "x-amz-date" not in names:
            return False
        when = datetime.strptime(headers.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        url = f"http://{headers['host']}{req.path}"
        if req.query:
            url += "?" + urlencode(req.query, doseq=True)
        signed = {n: headers.get(n, "") for n in names if n not in ("x-amz-date", "x-amz-security-token")}
        again = sign(
            req.method,
            url,
            signed,
            req.raw,
            credentials=self.credentials,
            region=self.region,
            service=self.service,
            now=when,
        )
        return hmac.compare_digest(again["Authorization"], auth)

    def add_entitlement(self, product: str, customer: str, dimension: str, quantity: int) -> None:
        """One entitlement of a customer."""
        self.entitlements.append(
            {
                "ProductCode": product,
                "CustomerIdentifier": customer,
                "CustomerAWSAccountId": "123456789012",
                "Dimension": dimension,
                "Value": {"IntegerValue": quantity},
                "ExpirationDate": 1893456000,
            }
        )

    def route(self, req: Request) -> str:
        target = req.headers.get("X-Amz-Target", "")
        return target.rsplit(".", 1)[-1] or "unknown"

    def answer(self, req: Request) -> Answer:
        body = req.body or {}
        if self.credentials is not None and not self.signature_ok(req):
            return 403, {"__type": "InvalidSignatureException"}
        if req.route == "GetAgreementTerms":
            terms = self.terms.get(str(body.get("agreementId")))
            return (200, terms) if terms else (400, {"__type": "ResourceNotFoundException"})
        if req.route == "GetEntitlements":
            customers = (body.get("Filter") or {}).get("CUSTOMER_IDENTIFIER") or []
            found = [
                e
                for e in self.entitlements
                if e["ProductCode"] == body.get("ProductCode")
                and (not customers or e["CustomerIdentifier"] in customers)
            ]
            return 200, {"Entitlements": found}
        if req.route == "BatchMeterUsage":
            results = []
            for rec in body.get("UsageRecords") or []:
                key = (rec["CustomerIdentifier"], rec["Dimension"], int(rec["Timestamp"]))
                if key not in self.metered:
                    self.metered[key] = int(rec["Quantity"])
                    self.acks.append(("meter", *map(str, key)))
                results.append(
                    {"UsageRecord": rec, "MeteringRecordId": "|".join(map(str, key)), "Status": "Success"}
                )
            return 200, {"Results": results, "UnprocessedRecords": []}
        return 400, {"__type": "UnknownOperationException"}


@dataclass
class ShopifyStandIn(StandIn):
    """Admin GraphQL ``subscriptionContract(id)``."""

    contracts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_contract(self, gid: str, sku: str, quantity: int, price: str, currency: str = "USD") -> None:
        """A contract with one line."""
        self.contracts[gid] = {
            "id": gid,
            "status": "ACTIVE",
            "currencyCode": currency,
            "nextBillingDate": "2025-07-03T15:42:10Z",
            "billingPolicy": {"interval": "MONTH", "intervalCount": 1},
            "customer": {"id": "gid://shopify/Customer/1", "email": "buyer@shop.example"},
            "lines": {
                "nodes": [
                    {
                        "quantity": quantity,
                        "currentPrice": {"amount": price, "currencyCode": currency},
                        "sellingPlanId": "gid://shopify/SellingPlan/1",
                        "sellingPlanName": "Monthly",
                        "productId": "gid://shopify/Product/1",
                        "variantId": "gid://shopify/ProductVariant/1",
                        "sku": sku,
                        "title": "Coffee club",
                    }
                ]
            },
        }

    def route(self, req: Request) -> str:
        return "graphql" if req.path.endswith("/graphql.json") else "unknown"

    def answer(self, req: Request) -> Answer:
        body = req.body or {}
        gid = (body.get("variables") or {}).get("id")
        return 200, {"data": {"subscriptionContract": self.contracts.get(str(gid))}}


_ST = re.compile(
    r"^/v1/vendors/projects/(?P<p>[^/]+)/subscriptions(?:/(?P<sid>[^/]+)(?:/(?P<verb>approve|reject))?)?$"
)


@dataclass
class StackitStandIn(StandIn):
    """Vendor API: list (cursor paging), get, approve and reject a pending subscription (once)."""

    project: str = "project-1"
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    page_size: int = 2

    def route(self, req: Request) -> str:
        m = _ST.match(req.path)
        if not m:
            return "unknown"
        return m["verb"] or ("get" if m["sid"] else "list")

    def answer(self, req: Request) -> Answer:
        m = _ST.match(req.path)
        if not m or m["p"] != self.project:
            return 404, {"message": "not found"}
        if req.route == "list":
            ids = sorted(self.subscriptions)
            start = int((req.query.get("cursor") or ["0"])[0])
            page = ids[start : start + self.page_size]
            nxt = start + self.page_size
            return 200, {
                "items": [self.subscriptions[i] for i in page],
                "cursor": str(nxt) if nxt < len(ids) else None,
                "limit": self.page_size,
            }
        sub = self.subscriptions.get(m["sid"])
        if sub is None:
            return 404, {"message": "not found"}
        if req.route == "get":
            return 200, sub
        if sub["lifecycleState"] != "SUBSCRIPTION_PENDING":
            return 409, {"message": f"subscription is {sub['lifecycleState']}"}
        sub["lifecycleState"] = "SUBSCRIPTION_ACTIVE" if req.route == "approve" else "SUBSCRIPTION_REJECTED"
        self.acks.append((req.route, m["sid"]))
        return 200, None
