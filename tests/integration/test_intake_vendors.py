"""Vendor lookups and outbound fulfilment against local vendor stand-ins, real broker and PostgreSQL.

Done-when 3: a GCP creation event, a Shopify contract webhook and an AWS SNS subscribe notice end on
the plan the vendor's lookup names (``enterprise``), not the channel's default (``pro``).
Done-when 4: the fulfilment conversation of Azure, GCP, STACKIT and AWS; a 503 then 200 is one
acknowledgement; a redelivery adds none; a refused change is PATCHed ``Failure``; a crash between the
vendor call and its commit leaves one acknowledgement (AWS metering: two calls, counted once).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.intake.vendors import store
from services.intake.vendors.fulfilment import CRASH_POINT, FulfilmentDelivery, SimulatedCrash
from services.intake.vendors.sigv4 import AwsCredentials
from services.intake.vendors.wiring import vendor_set
from shared.contracts import events as ev
from shared.contracts.commands import params_for
from shared.contracts.envelope import derived_id, make_event
from shared.db.uow import Database
from shared.messaging import topics
from shared.messaging.faults import faults
from shared.settings import Settings
from shared.timekeeping import create_clock
from som.runner import child_env
from tests.integration.helpers import TopicReader, publish, running_workers
from tests.standins.vendors import AwsStandIn, AzureStandIn, GcpStandIn, ShopifyStandIn, StackitStandIn

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "channels"
AWS_PRODUCT = "4kq8xw2m7n3bz5yt0vp6cd1ra"


def _uid() -> str:
    return str(uuid.uuid4())


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Wait (bounded) until ``check`` holds; the assertions after it say what was expected."""
    for _ in range(int(timeout / 0.2)):
        if await check():
            return
        await asyncio.sleep(0.2)


async def _clock(settings: Settings, db: Database) -> str:
    name = f"{settings.topic_namespace}clock"
    await create_clock(db.pool, name, datetime(2025, 8, 1, tzinfo=UTC))
    return name


async def _plans(db: Database, ids: list[str]) -> dict[str, str]:
    rows = await db.pool.fetch(
        "SELECT subscription_id, plan_id FROM lifecycle.subscriptions WHERE subscription_id = ANY($1::text[])",
        ids,
    )
    return {r["subscription_id"]: r["plan_id"] for r in rows}


def _gcp_event(eid: str) -> bytes:
    return json.dumps(
        {
            "eventId": f"CREATE_ENTITLEMENT-{_uid()}",
            "eventType": "ENTITLEMENT_CREATION_REQUESTED",
            "providerId": "prov-1",
            "entitlement": {"id": eid, "updateTime": "2025-07-10T08:14:02.481337Z"},
        }
    ).encode()


def _sns(action: str, customer: str, at: str) -> bytes:
    message = {"action": action, "customer-identifier": customer, "product-code": AWS_PRODUCT}
    return json.dumps(
        {"Type": "Notification", "MessageId": _uid(), "Message": json.dumps(message), "Timestamp": at}
    ).encode()


def _azure_create(sid: str) -> bytes:
    doc = json.loads((FIXTURES / "azure/01-create.json").read_text())
    doc["id"] = doc["subscription"]["id"] = sid
    doc["subscription"]["beneficiary"]["objectId"] = _uid()
    doc["subscription"]["term"]["startDate"] = "2025-07-01T00:00:00Z"
    return json.dumps(doc).encode()


def _azure_operation(sid: str, op: str, quantity: int, at: str) -> bytes:
    doc = json.loads((FIXTURES / "azure/02-change-quantity.json").read_text())
    doc.update({"id": op, "activityId": _uid(), "subscriptionId": sid, "quantity": quantity, "timeStamp": at})
    doc["subscription"]["id"] = sid
    return json.dumps(doc).encode()


async def test_lookups_put_gcp_shopify_and_aws_orders_on_the_vendors_plan(
    settings: Settings, db: Database
) -> None:
    eid, gid, customer = (
        _uid(),
        f"gid://shopify/SubscriptionContract/{uuid.uuid4().int % 10**12}",
        _uid()[:12],
    )
    with (
        GcpStandIn(token="g-token", provider="prov-1") as gcp,
        ShopifyStandIn() as shop,
        AwsStandIn(token="a-token") as aws,
    ):
        assert (
            isinstance(gcp, GcpStandIn) and isinstance(shop, ShopifyStandIn) and isinstance(aws, AwsStandIn)
        )
        gcp.add_entitlement(eid, "scale-monthly")
        gcp.fail("get", 3)  # the first handling fails (2 attempts): the event goes to the retry topic
        shop.add_contract(gid, "FERN-ENTERPRISE", 12, "49.00")
        aws.add_entitlement(AWS_PRODUCT, customer, "enterprise_tier", 15)
        s = settings.model_copy(
            update={
                "gcp_procurement_base_url": gcp.base_url,
                "gcp_procurement_token": SecretStr("g-token"),
                "gcp_provider_id": "prov-1",
                "shopify_admin_base_url": shop.base_url,
                "shopify_admin_token": SecretStr("shpat-1"),
                "aws_marketplace_base_url": aws.base_url,
                "aws_marketplace_token": SecretStr("a-token"),
                "vendor_backoff_seconds": (0.05,),
                "fulfilment_poll_seconds": 0.2,
            }
        )
        clock = {"som-test-clock": await _clock(settings, db)}
        ids = {
            "gcp": derived_id("subscription", "gcp_marketplace", eid),
            "shopify": derived_id("subscription", "shopify", gid),
            "aws": derived_id("subscription", "aws_marketplace", f"{AWS_PRODUCT}:{customer}"),
        }
        async with running_workers(s, db, names=("intake", "lifecycle")):
            await publish(s, topics.inbound("gcp_marketplace"), _gcp_event(eid), key=eid, headers=clock)
            webhook = json.dumps(
                {"admin_graphql_api_id": gid, "status": "active", "currency_code": "USD"}
            ).encode()
            shop_headers = {
                "http.X-Shopify-Topic": "subscription_contracts/create",
                "http.X-Shopify-Shop-Domain": "fern.myshopify.com",
                "http.X-Shopify-Webhook-Id": _uid(),
                "http.X-Shopify-Triggered-At": "2025-07-10T10:00:00.000Z",
            }
            await publish(s, topics.inbound("shopify"), webhook, key=gid, headers={**shop_headers, **clock})
            sns = _sns("subscribe-success", customer, "2025-07-10T10:00:00.000Z")
            await publish(s, topics.inbound("aws_marketplace"), sns, key=customer, headers=clock)

            async def found() -> bool:
                return len(await _plans(db, list(ids.values()))) == 3

            await _until(found)
            plans = await _plans(db, list(ids.values()))
            # enterprise is approved by a person (approval policy): GCP has no answer until then
            await asyncio.sleep(1.0)
            assert gcp.acks == []
            await _operator(s, ids["gcp"], "gcp_marketplace", "approve", None)
            await _until(lambda: _has(gcp.acks, ("approve", eid)))
    assert plans == {sid: "enterprise" for sid in ids.values()}  # the lookups' plan, not the default `pro`
    assert len(gcp.routed("get")) >= 4  # three 503s, then the answer
    assert gcp.acks == [("approve", eid)]  # approved at GCP once the lifecycle approved it
    assert shop.requests[0].headers.get("X-Shopify-Access-Token") == "shpat-1"
    quantity = await db.pool.fetchval(
        "SELECT (canonical->>'quantity')::int FROM intake.orders WHERE subscription_id = $1", ids["aws"]
    )
    assert quantity == 15


async def test_azure_conversation_activate_patch_success_and_failure(
    settings: Settings, db: Database
) -> None:
    sid, op1, op2 = _uid(), _uid(), _uid()
    with AzureStandIn(token="az-token") as azure:
        assert isinstance(azure, AzureStandIn)
        azure.add_subscription(sid, "team-monthly", 15)
        azure.add_operation(sid, op1, "ChangeQuantity")
        azure.add_operation(sid, op2, "ChangeQuantity")
        azure.fail("patch_operation", 1)  # 503 then 200: one acknowledgement
        s = settings.model_copy(
            update={
                "azure_fulfillment_base_url": azure.base_url,
                "azure_fulfillment_token": SecretStr("az-token"),
                "azure_patch_deadline_seconds": 10.0**9,  # business dates of 2025 under a test clock
                "vendor_backoff_seconds": (0.05,),
                "fulfilment_poll_seconds": 0.2,
            }
        )
        clock = {"som-test-clock": await _clock(settings, db)}
        inbound = topics.inbound("azure_marketplace")
        async with running_workers(s, db, names=("intake", "lifecycle")):
            await publish(s, inbound, _azure_create(sid), key=sid, headers=clock)
            await _until(lambda: _has(azure.acks, ("activate", sid)))
            change = _azure_operation(sid, op1, 25, "2025-07-10T10:00:00.0000000Z")
            await publish(s, inbound, change, key=sid, headers=clock)
            await _until(lambda: _has(azure.acks, ("patch", op1, "Success")))
            # Azure delivers the webhook again (new activityId, same operation): no second PATCH
            await publish(
                s,
                inbound,
                _azure_operation(sid, op1, 25, "2025-07-10T10:00:00.0000000Z"),
                key=sid,
                headers=clock,
            )
            # the same quantity again: the lifecycle refuses it (NO_CHANGE), so the operation fails
            await publish(
                s,
                inbound,
                _azure_operation(sid, op2, 25, "2025-07-11T10:00:00.0000000Z"),
                key=sid,
                headers=clock,
            )
            await _until(lambda: _has(azure.acks, ("patch", op2, "Failure")))
            # and the lifecycle's events delivered again change nothing either
            async with TopicReader(
                str(s.kafka_bootstrap), f"{s.topic_namespace}{topics.SUBSCRIPTIONS_EVENTS}"
            ) as ev:
                await ev.wait_for(3, timeout=10)
                for rec in ev.records:
                    await publish(
                        s,
                        topics.SUBSCRIPTIONS_EVENTS,
                        rec.value,
                        key=sid,
                        headers={"ce_id": json.loads(rec.value)["id"]},
                    )
            await asyncio.sleep(2.0)  # give a wrong second call the chance to happen
        rows = await db.pool.fetch(
            "SELECT operation_id, action, state FROM intake.vendor_calls WHERE namespace = $1 ORDER BY id",
            s.topic_namespace,
        )
    assert azure.acks == [("activate", sid), ("patch", op1, "Success"), ("patch", op2, "Failure")]
    assert len(azure.routed("patch_operation")) == 3  # the 503, the Success, the Failure
    assert [(r["operation_id"], r["action"], r["state"]) for r in rows] == [
        (sid, "activate", "acked"),
        (op1, "patch_operation", "acked"),
        (op2, "patch_operation", "acked"),
    ]


async def _has(acks: list[tuple[str, ...]], wanted: tuple[str, ...]) -> bool:
    return wanted in acks


def _gcp_plan_change(eid: str, plan: str, at: str) -> bytes:
    return json.dumps(
        {
            "eventId": f"PLAN_CHANGE-{_uid()}",
            "eventType": "ENTITLEMENT_PLAN_CHANGE_REQUESTED",
            "providerId": "prov-1",
            "entitlement": {"id": eid, "newPlan": plan, "updateTime": at},
        }
    ).encode()


async def test_gcp_conversation_approve_then_plan_changes_approved_and_rejected(
    settings: Settings, db: Database
) -> None:
    eid = _uid()
    with GcpStandIn(token="g", provider="prov-1") as gcp:
        assert isinstance(gcp, GcpStandIn)
        gcp.add_entitlement(eid, "basic-monthly")  # -> pro, approved automatically
        s = settings.model_copy(
            update={
                "gcp_procurement_base_url": gcp.base_url,
                "gcp_procurement_token": SecretStr("g"),
                "gcp_provider_id": "prov-1",
                "vendor_backoff_seconds": (0.05,),
                "fulfilment_poll_seconds": 0.2,
            }
        )
        clock = {"som-test-clock": await _clock(settings, db)}
        inbound = topics.inbound("gcp_marketplace")

        def pending(plan: str) -> None:
            with gcp.lock:
                gcp.entitlements[eid].update(
                    {"state": "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL", "newPendingPlan": plan}
                )

        async with running_workers(s, db, names=("intake", "lifecycle")):
            await publish(s, inbound, _gcp_event(eid), key=eid, headers=clock)
            await _until(lambda: _has(gcp.acks, ("approve", eid)))
            pending("starter-monthly")  # pro -> starter: the lifecycle changes the plan
            change = _gcp_plan_change(eid, "starter-monthly", "2025-07-12T10:00:00Z")
            await publish(s, inbound, change, key=eid, headers=clock)
            await _until(lambda: _has(gcp.acks, ("approvePlanChange", eid, "starter-monthly")))
            pending("starter-monthly")  # the same plan again: the lifecycle refuses it (NO_CHANGE)
            again = _gcp_plan_change(eid, "starter-monthly", "2025-07-13T10:00:00Z")
            await publish(s, inbound, again, key=eid, headers=clock)
            await _until(lambda: _has(gcp.acks, ("rejectPlanChange", eid, "starter-monthly")))
        plans = await _plans(db, [derived_id("subscription", "gcp_marketplace", eid)])
    assert gcp.acks == [
        ("approve", eid),
        ("approvePlanChange", eid, "starter-monthly"),
        ("rejectPlanChange", eid, "starter-monthly"),
    ]
    assert list(plans.values()) == ["starter"]


async def test_crash_between_vendor_call_and_commit_acknowledges_once(
    settings: Settings, db: Database
) -> None:
    sid, eid = _uid(), _uid()
    with AzureStandIn(token="az") as azure, GcpStandIn(token="g", provider="prov-1") as gcp:
        assert isinstance(azure, AzureStandIn) and isinstance(gcp, GcpStandIn)
        azure.add_subscription(sid, "team-monthly", 15)
        gcp.add_entitlement(eid, "basic-monthly")  # -> pro (the channel's mapping), approved automatically
        s = settings.model_copy(
            update={
                "azure_fulfillment_base_url": azure.base_url,
                "azure_fulfillment_token": SecretStr("az"),
                "gcp_procurement_base_url": gcp.base_url,
                "gcp_procurement_token": SecretStr("g"),
                "gcp_provider_id": "prov-1",
                "fulfilment_delivery": False,  # this test makes the calls itself, crash included
                "vendor_backoff_seconds": (0.05,),
            }
        )
        clock = {"som-test-clock": await _clock(settings, db)}
        async with running_workers(s, db, names=("intake", "lifecycle")):
            await publish(s, topics.inbound("azure_marketplace"), _azure_create(sid), key=sid, headers=clock)
            await publish(s, topics.inbound("gcp_marketplace"), _gcp_event(eid), key=eid, headers=clock)

            async def recorded() -> bool:
                n = await db.pool.fetchval(
                    "SELECT count(*) FROM intake.vendor_calls WHERE namespace = $1", s.topic_namespace
                )
                return int(n) == 2

            await _until(recorded)
        # the same calls decided again (a redelivered event) record nothing new
        rows = await db.pool.fetch(
            "SELECT * FROM intake.vendor_calls WHERE namespace = $1", s.topic_namespace
        )
        async with db.pool.acquire() as conn:
            assert await store.record_calls(conn, s.topic_namespace, [store.as_call(r) for r in rows]) == 0
        clients = vendor_set(s).fulfilment
        first = FulfilmentDelivery(db, clients, lease_seconds=3600)
        faults.arm(CRASH_POINT)
        try:
            with pytest.raises(SimulatedCrash):  # the first call reached the vendor; its commit never ran
                await first.deliver_once()
        finally:
            faults.disarm()
        assert len(azure.acks) + len(gcp.acks) == 1
        # a new worker takes over the calls left in flight once their lease ran out (0 here)
        second = FulfilmentDelivery(db, clients, lease_seconds=0)
        outcomes = sorted(o for _, o in await second.deliver_once())
        third = await second.deliver_once()
        for client in clients.values():
            await client.aclose()
    assert outcomes == ["acked", "confirmed"]  # the crashed call is confirmed at the vendor, not repeated
    assert third == []
    assert azure.acks == [("activate", sid)] and len(azure.routed("activate")) == 1
    assert gcp.acks == [("approve", eid)] and len(gcp.routed("approve")) == 1


async def test_stackit_approval_follows_the_lifecycle(settings: Settings, db: Database) -> None:
    good, bad = _uid(), _uid()
    base = json.loads((FIXTURES / "stackit/01-create.json").read_text())
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with StackitStandIn(token="st", project="project-1") as stackit:
        assert isinstance(stackit, StackitStandIn)
        for sid, plan in ((good, "team-monthly"), (bad, "no-such-plan")):
            stackit.subscriptions[sid] = {
                **base,
                "subscriptionId": sid,
                "organizationId": _uid(),
                "orderedAt": now,
                "product": {**base["product"], "planId": plan},
            }
        s = settings.model_copy(
            update={
                "stackit_base_url": stackit.base_url,
                "stackit_token": "st",
                "stackit_project_id": "project-1",
                "stackit_poll_seconds": 0.3,
                "stackit_fulfilment": True,
                "fulfilment_poll_seconds": 0.2,
            }
        )
        async with running_workers(s, db, names=("intake", "lifecycle")):
            await _until(lambda: _has(stackit.acks, ("approve", good)))
            await _until(lambda: _has(stackit.acks, ("reject", bad)))
        deadline = await db.pool.fetchval(
            "SELECT deadline FROM intake.vendor_calls WHERE namespace = $1 AND operation_id = $2",
            s.topic_namespace,
            good,
        )
    assert sorted(stackit.acks) == sorted([("approve", good), ("reject", bad)])
    # approved within its approval timeout (orderedAt + 3600s), by the lifecycle's decision
    assert deadline == datetime.fromisoformat(now.replace("Z", "+00:00")) + timedelta(seconds=3600)


async def test_aws_final_metering_before_unsubscribe_and_after_a_crash(
    settings: Settings, db: Database
) -> None:
    customer = _uid()[:12]
    # SigV4-signed: the stand-in recomputes every request's signature (403 when it does not match)
    with AwsStandIn(credentials=AwsCredentials("AKIDTEST", "test-secret", "session-1")) as aws:
        assert isinstance(aws, AwsStandIn)
        aws.add_entitlement(AWS_PRODUCT, customer, "team_tier", 15)  # -> pro
        s = settings.model_copy(
            update={
                "aws_marketplace_base_url": aws.base_url,
                "aws_access_key_id": "AKIDTEST",
                "aws_secret_access_key": SecretStr("test-secret"),
                "aws_session_token": SecretStr("session-1"),
                "aws_metered_dimensions": {"pro": "seats"},
                "fulfilment_delivery": False,
                "vendor_backoff_seconds": (0.05,),
            }
        )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        async with running_workers(s, db, names=("intake", "lifecycle")):
            inbound = topics.inbound("aws_marketplace")
            await publish(s, inbound, _sns("subscribe-success", customer, now), key=customer)
            sid = derived_id("subscription", "aws_marketplace", f"{AWS_PRODUCT}:{customer}")
            await _until(lambda: _exists(db, sid))
            await publish(s, inbound, _sns("unsubscribe-pending", customer, now), key=customer)

            async def recorded() -> bool:
                n = await db.pool.fetchval(
                    "SELECT count(*) FROM intake.vendor_calls WHERE namespace = $1", s.topic_namespace
                )
                return int(n) == 1

            await _until(recorded)
        clients = vendor_set(s).fulfilment
        faults.arm(CRASH_POINT)
        try:
            with pytest.raises(SimulatedCrash):
                await FulfilmentDelivery(db, clients, lease_seconds=3600).deliver_once()
        finally:
            faults.disarm()
        outcomes = [o for _, o in await FulfilmentDelivery(db, clients, lease_seconds=0).deliver_once()]
        for client in clients.values():
            await client.aclose()
    assert outcomes == ["acked"]
    # BatchMeterUsage has no read-back: made again after the crash, counted once by its usage record
    assert len(aws.routed("BatchMeterUsage")) == 2 and len(aws.acks) == 1
    [(kind, who, dimension, _hour)] = aws.acks
    assert (kind, who, dimension) == ("meter", customer, "seats")
    assert list(aws.metered.values()) == [15]
    assert {r.route for r in aws.requests} == {"GetEntitlements", "BatchMeterUsage"}
    assert all(r.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 ") for r in aws.requests)


async def _exists(db: Database, sid: str) -> bool:
    return bool(
        await db.pool.fetchval("SELECT 1 FROM lifecycle.subscriptions WHERE subscription_id = $1", sid)
    )


async def test_a_call_past_its_deadline_raises_the_alert(settings: Settings, db: Database) -> None:
    sid, op = _uid(), _uid()
    with AzureStandIn(token="az") as azure:
        assert isinstance(azure, AzureStandIn)
        azure.add_subscription(sid, "team-monthly", 15)
        azure.add_operation(sid, op, "ChangeQuantity")
        s = settings.model_copy(
            update={
                "azure_fulfillment_base_url": azure.base_url,
                "azure_fulfillment_token": SecretStr("az"),
                "fulfilment_delivery": False,
            }
        )
        clock = {"som-test-clock": await _clock(settings, db)}
        inbound = topics.inbound("azure_marketplace")
        async with running_workers(s, db, names=("intake", "lifecycle")):
            await publish(s, inbound, _azure_create(sid), key=sid, headers=clock)
            # an operation of 2025: its 10 s to answer are long gone
            await publish(
                s,
                inbound,
                _azure_operation(sid, op, 25, "2025-07-10T10:00:00.0000000Z"),
                key=sid,
                headers=clock,
            )

            async def recorded() -> bool:
                n = await db.pool.fetchval(
                    "SELECT count(*) FROM intake.vendor_calls WHERE namespace = $1", s.topic_namespace
                )
                return int(n) == 2

            await _until(recorded)
            clients = vendor_set(s).fulfilment
            outcomes = sorted(
                o for _, o in await FulfilmentDelivery(db, clients, lease_seconds=0).deliver_once()
            )
            for client in clients.values():
                await client.aclose()
            async with TopicReader(
                str(s.kafka_bootstrap), f"{s.topic_namespace}{topics.CHANNELS_DEADLINE_MISSED}"
            ) as alerts:
                await alerts.wait_for(1, timeout=15)
    assert outcomes == ["acked", "deadline_missed"]
    [alert] = alerts.values()
    assert alert["data"]["operation_id"] == op and alert["data"]["action"] == "patch_operation"
    assert azure.acks == [("activate", sid)]  # the late PATCH is not made


AZURE_GCP_ENV = {
    "SOM_AZURE_FULFILLMENT_TOKEN": "az",
    "SOM_GCP_PROCUREMENT_TOKEN": "g",
    "SOM_GCP_PROVIDER_ID": "prov-1",
}


def _intake_process(s: Settings, **extra: str) -> subprocess.Popen[bytes]:
    """The intake worker as its own process (``python -m som worker intake``), vendors from the env."""
    env = child_env(
        s,
        SOM_LOG_JSON="false",
        SOM_VENDOR_BACKOFF_SECONDS="[0.05]",
        SOM_FULFILMENT_POLL_SECONDS="0.2",
        SOM_FULFILMENT_LEASE_SECONDS="0.5",
        **extra,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "som", "worker", "intake"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)


async def _died_after_vendor_call(proc: subprocess.Popen[bytes]) -> None:
    """Wait for the worker started with the crash fault to exit as a SIGKILL would (137)."""
    for _ in range(600):
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.1)
    assert proc.returncode == 137, "the intake worker should have died after its vendor call"


async def _until_acked(db: Database, namespace: str, count: int) -> None:
    """Wait until ``count`` vendor calls of the namespace are acknowledged."""

    async def acked() -> bool:
        n = await db.pool.fetchval(
            "SELECT count(*) FROM intake.vendor_calls WHERE namespace = $1 AND state = 'acked'", namespace
        )
        return int(n) == count

    await _until(acked, timeout=60)


async def test_intake_worker_killed_after_a_vendor_call_acknowledges_once_after_restart(
    settings: Settings, db: Database
) -> None:
    """Done-when 4 with a real process: the intake worker dies (exit 137, like SIGKILL) right after a
    vendor accepted its call and before the call's commit; a restarted worker takes the call over,
    confirms it at the vendor (Azure get subscription, GCP entitlements.get) and does not repeat it."""
    sid, eid = _uid(), _uid()
    with AzureStandIn(token="az") as azure, GcpStandIn(token="g", provider="prov-1") as gcp:
        assert isinstance(azure, AzureStandIn) and isinstance(gcp, GcpStandIn)
        azure.add_subscription(sid, "team-monthly", 15)
        gcp.add_entitlement(eid, "basic-monthly")  # -> pro, approved automatically
        s = settings.model_copy(
            update={"azure_fulfillment_base_url": azure.base_url, "gcp_procurement_base_url": gcp.base_url}
        )
        clock = {"som-test-clock": await _clock(settings, db)}
        urls = {
            "SOM_AZURE_FULFILLMENT_BASE_URL": azure.base_url,
            "SOM_GCP_PROCUREMENT_BASE_URL": gcp.base_url,
            **AZURE_GCP_ENV,
        }
        first = _intake_process(s, SOM_FAULTS=CRASH_POINT, **urls)
        second: subprocess.Popen[bytes] | None = None
        try:
            async with running_workers(s, db, names=("lifecycle",)):
                await publish(
                    s, topics.inbound("azure_marketplace"), _azure_create(sid), key=sid, headers=clock
                )
                await publish(s, topics.inbound("gcp_marketplace"), _gcp_event(eid), key=eid, headers=clock)
                await _died_after_vendor_call(first)
                assert len(azure.acks) + len(gcp.acks) == 1  # the vendor took the call; the commit never ran
                in_flight = await db.pool.fetchval(
                    "SELECT count(*) FROM intake.vendor_calls WHERE namespace = $1 AND state = 'in_flight'",
                    s.topic_namespace,
                )
                assert in_flight >= 1  # claimed together; the one after the crashed call was never made
                second = _intake_process(s, **urls)
                await _until(lambda: _has(azure.acks, ("activate", sid)), timeout=60)
                await _until(lambda: _has(gcp.acks, ("approve", eid)), timeout=60)

                await _until_acked(db, s.topic_namespace, 2)
        finally:
            _stop(first)
            if second is not None:
                _stop(second)
        rows = await db.pool.fetch(
            "SELECT operation_id, action, state, response FROM intake.vendor_calls WHERE namespace = $1",
            s.topic_namespace,
        )
    assert sorted((r["operation_id"], r["action"], r["state"]) for r in rows) == sorted(
        [(sid, "activate", "acked"), (eid, "decision", "acked")]
    )
    # one call reached the vendor before the crash and was confirmed, not repeated, after the restart
    assert azure.acks == [("activate", sid)] and len(azure.routed("activate")) == 1
    assert gcp.acks == [("approve", eid)] and len(gcp.routed("approve")) == 1
    confirmed = [r for r in rows if "confirmed" in str(r["response"])]
    assert len(confirmed) == 1


def _azure_webhook(fixture: str, sid: str, op: str, at: str, **fields: object) -> bytes:
    doc = json.loads((FIXTURES / "azure" / fixture).read_text())
    doc.update({"id": op, "activityId": _uid(), "subscriptionId": sid, "timeStamp": at, **fields})
    doc["subscription"]["id"] = sid
    return json.dumps(doc).encode()


async def _status(db: Database, sid: str) -> str | None:
    value = await db.pool.fetchval(
        "SELECT status FROM lifecycle.subscriptions WHERE subscription_id = $1", sid
    )
    return str(value) if value is not None else None


async def test_azure_reinstate_is_patched_success_and_unknown_operations_are_refused(
    settings: Settings, db: Database
) -> None:
    """Reinstate: after the lifecycle reactivates the suspended subscription, the operation is PATCHed
    ``Success``. With ``azure_webhook_check=get_operation`` every webhook is first confirmed at Azure;
    one whose operation Azure does not know is refused ``SIGNATURE_INVALID`` and never acted on."""
    sid, suspend, reinstate, forged = _uid(), _uid(), _uid(), _uid()
    with AzureStandIn(token="az") as azure:
        assert isinstance(azure, AzureStandIn)
        azure.add_subscription(sid, "team-monthly", 15)
        azure.add_operation(sid, suspend, "Suspend")
        azure.add_operation(sid, reinstate, "Reinstate")
        s = settings.model_copy(
            update={
                "azure_fulfillment_base_url": azure.base_url,
                "azure_fulfillment_token": SecretStr("az"),
                "azure_webhook_check": "get_operation",
                "azure_patch_deadline_seconds": 10.0**9,  # business dates of 2025 under a test clock
                "vendor_backoff_seconds": (0.05,),
                "fulfilment_poll_seconds": 0.2,
            }
        )
        clock = {"som-test-clock": await _clock(settings, db)}
        inbound = topics.inbound("azure_marketplace")
        subscription = derived_id("subscription", "azure_marketplace", sid)
        bootstrap = str(s.kafka_bootstrap)
        async with (
            running_workers(s, db, names=("intake", "lifecycle")),
            TopicReader(bootstrap, f"{s.topic_namespace}{topics.ORDERS_REJECTED}") as rejected,
        ):
            await publish(s, inbound, _azure_create(sid), key=sid, headers=clock)
            await _until(lambda: _has(azure.acks, ("activate", sid)))
            # a forged ChangeQuantity: Azure never issued its operation
            fake = _azure_webhook("02-change-quantity.json", sid, forged, "2025-07-15T10:00:00Z", quantity=99)
            await publish(s, inbound, fake, key=sid, headers=clock)
            await rejected.wait_for(1, timeout=30)
            hold = _azure_webhook(
                "04-suspend.json", sid, suspend, "2025-07-20T10:00:00Z", planId="team-monthly"
            )
            await publish(s, inbound, hold, key=sid, headers=clock)

            async def suspended() -> bool:
                return await _status(db, subscription) == "suspended"

            await _until(suspended)
            back = _azure_webhook(
                "04-suspend.json",
                sid,
                reinstate,
                "2025-07-21T10:00:00Z",
                action="Reinstate",
                status="InProgress",  # Azure waits for the ISV's PATCH
                planId="team-monthly",
            )
            await publish(s, inbound, back, key=sid, headers=clock)
            await _until(lambda: _has(azure.acks, ("patch", reinstate, "Success")))
            await rejected.settle(0.5)
            status = await _status(db, subscription)
            forged_orders = await db.pool.fetchval(
                "SELECT count(*) FROM intake.orders WHERE canonical->>'channel_event_id' = $1", forged
            )
    assert azure.acks == [("activate", sid), ("patch", reinstate, "Success")]
    assert status == "active" and forged_orders == 0  # the forged change was never recorded nor sent on
    [refusal] = rejected.values()
    assert [r["code"] for r in refusal["data"]["reasons"]] == ["SIGNATURE_INVALID"]
    asked = {r.path.rsplit("/", 1)[-1] for r in azure.requests if r.route == "get_operation"}
    assert {forged, suspend, reinstate} <= asked


async def _operator(
    s: Settings, subscription_id: str, channel: str, command: str, reason: str | None
) -> None:
    """What ``som approve``, ``som reject`` (or another operator command) sends."""
    cmd = ev.SubscriptionCommand(
        subscription_id=subscription_id,
        idempotency_key=f"operator:{_uid()}",
        channel=channel,
        effective_at=datetime(2025, 8, 1, tzinfo=UTC),
        actor="operator:test",
        reason=reason,
        params=params_for(command),
    )
    key = derived_id("operator", cmd.idempotency_key)
    event = make_event(
        type=ev.SUBSCRIPTION_COMMAND,
        source="som/cli",
        subject=subscription_id,
        data=cmd,
        correlation_id=key,
        causation_id=key,
    )
    await publish(
        s,
        topics.SUBSCRIPTIONS_COMMANDS,
        event.model_dump_json().encode(),
        key=subscription_id,
        headers={"ce_id": event.id, "ce_type": event.type},
    )


async def test_stackit_subscription_held_by_the_approval_policy_and_rejected_is_rejected_at_stackit(
    settings: Settings, db: Database
) -> None:
    """The lifecycle's approval policy holds an enterprise subscription (manual); no decision reaches
    STACKIT until a person decides; the rejection becomes STACKIT's ``reject`` call, never ``approve``."""
    sid = _uid()
    base = json.loads((FIXTURES / "stackit/01-create.json").read_text())
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with StackitStandIn(token="st", project="project-1") as stackit:
        assert isinstance(stackit, StackitStandIn)
        stackit.subscriptions[sid] = {
            **base,
            "subscriptionId": sid,
            "organizationId": _uid(),
            "orderedAt": now,
            "product": {**base["product"], "planId": "business-monthly"},  # -> enterprise: manual
        }
        s = settings.model_copy(
            update={
                "stackit_base_url": stackit.base_url,
                "stackit_token": "st",
                "stackit_project_id": "project-1",
                "stackit_poll_seconds": 0.3,
                "stackit_fulfilment": True,
                "fulfilment_poll_seconds": 0.2,
            }
        )
        subscription = derived_id("subscription", "stackit_marketplace", sid)
        async with running_workers(s, db, names=("intake", "lifecycle")):

            async def held() -> bool:
                return await _status(db, subscription) == "pending_approval"

            await _until(held)
            assert await _status(db, subscription) == "pending_approval"
            await asyncio.sleep(1.0)  # several polls and deliveries: still no decision at STACKIT
            assert stackit.acks == []
            await _operator(s, subscription, "stackit_marketplace", "reject", "no enterprise capacity")
            await _until(lambda: _has(stackit.acks, ("reject", sid)))
            status = await _status(db, subscription)
        body = [r.body for r in stackit.requests if r.route == "reject"]
    assert stackit.acks == [("reject", sid)]
    assert status == "terminated"  # a rejected subscription ends (SubscriptionRejected)
    assert body and "no enterprise capacity" in json.dumps(body[0])
    assert stackit.subscriptions[sid]["lifecycleState"] != "SUBSCRIPTION_PENDING"


async def test_intake_worker_killed_after_the_final_aws_metering_call_meters_once(
    settings: Settings, db: Database
) -> None:
    """The same crash for AWS: ``BatchMeterUsage`` has no read-back, so the restarted worker makes the
    call again; AWS counts a usage record once (customer, dimension, hour): two calls, one record."""
    customer = _uid()[:12]
    creds = AwsCredentials("AKIDTEST", "test-secret")
    with AwsStandIn(credentials=creds) as aws:
        assert isinstance(aws, AwsStandIn)
        aws.add_entitlement(AWS_PRODUCT, customer, "team_tier", 15)  # -> pro
        env = {
            "SOM_AWS_MARKETPLACE_BASE_URL": aws.base_url,
            "SOM_AWS_ACCESS_KEY_ID": "AKIDTEST",
            "SOM_AWS_SECRET_ACCESS_KEY": "test-secret",
            "SOM_AWS_METERED_DIMENSIONS": json.dumps({"pro": "seats"}),
        }
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        sid = derived_id("subscription", "aws_marketplace", f"{AWS_PRODUCT}:{customer}")
        first = _intake_process(settings, SOM_FAULTS=CRASH_POINT, **env)
        second: subprocess.Popen[bytes] | None = None
        try:
            async with running_workers(settings, db, names=("lifecycle",)):
                inbound = topics.inbound("aws_marketplace")
                await publish(settings, inbound, _sns("subscribe-success", customer, now), key=customer)
                await _until(lambda: _exists(db, sid), timeout=60)
                await publish(settings, inbound, _sns("unsubscribe-pending", customer, now), key=customer)
                await _died_after_vendor_call(first)
                assert len(aws.acks) == 1 and len(aws.routed("BatchMeterUsage")) == 1
                second = _intake_process(settings, **env)

                await _until_acked(db, settings.topic_namespace, 1)
        finally:
            _stop(first)
            if second is not None:
                _stop(second)
        state = await db.pool.fetchval(
            "SELECT state FROM intake.vendor_calls WHERE namespace = $1", settings.topic_namespace
        )
    assert state == "acked"
    assert len(aws.routed("BatchMeterUsage")) == 2  # made again after the crash (documented idempotent)
    assert len(aws.acks) == 1 and list(aws.metered.values()) == [15]  # counted once


async def test_intake_worker_killed_after_a_stackit_approval_approves_once(
    settings: Settings, db: Database
) -> None:
    """The same crash for STACKIT: the restarted worker reads the subscription back (no longer
    ``SUBSCRIPTION_PENDING``) and does not approve it again."""
    sid = _uid()
    base = json.loads((FIXTURES / "stackit/01-create.json").read_text())
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with StackitStandIn(token="st", project="project-1") as stackit:
        assert isinstance(stackit, StackitStandIn)
        stackit.subscriptions[sid] = {
            **base,
            "subscriptionId": sid,
            "organizationId": _uid(),
            "orderedAt": now,
            "product": {**base["product"], "planId": "team-monthly"},  # -> pro: approved automatically
        }
        env = {
            "SOM_STACKIT_BASE_URL": stackit.base_url,
            "SOM_STACKIT_TOKEN": "st",
            "SOM_STACKIT_PROJECT_ID": "project-1",
            "SOM_STACKIT_POLL_SECONDS": "0.3",
            "SOM_STACKIT_FULFILMENT": "true",
        }
        first = _intake_process(settings, SOM_FAULTS=CRASH_POINT, **env)
        second: subprocess.Popen[bytes] | None = None
        try:
            async with running_workers(settings, db, names=("lifecycle",)):
                await _died_after_vendor_call(first)
                assert stackit.acks == [("approve", sid)]
                second = _intake_process(settings, **env)

                await _until_acked(db, settings.topic_namespace, 1)
        finally:
            _stop(first)
            if second is not None:
                _stop(second)
        response = await db.pool.fetchval(
            "SELECT response FROM intake.vendor_calls WHERE namespace = $1", settings.topic_namespace
        )
    assert stackit.acks == [("approve", sid)] and len(stackit.routed("approve")) == 1
    assert "confirmed" in str(response)  # read back at STACKIT, not approved a second time
