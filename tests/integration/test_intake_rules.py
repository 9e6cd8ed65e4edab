"""FORMATS.md 8a rules and authenticity checks through the real intake worker.

Rule fixtures are published to ``orders.inbound.<channel>`` with their transport as Kafka
headers (as a receiver forwards them); what intake recorded (``intake.orders.canonical``) must
carry what each rule says. Snapshot mapping (rule 9) uses what the worker itself knows: the
same Azure subscription arrives as a pending resolve answer, then as a subscribed GET
snapshot without any transport context, and becomes an ``activate``. Forged Azure tokens and
SNS signatures are refused with SIGNATURE_INVALID on ``orders.rejected`` and never recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from tests.integration.helpers import TopicReader, publish, running_workers
from tests.integration.test_intake_channels import transport_headers

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "channels"
UNIT = Path(__file__).resolve().parents[1] / "unit" / "intake"

# rule fixture -> the canonical fields its rule decides
RULE_CASES: dict[str, tuple[str, ...]] = {
    "stackit/10-renew": ("action", "effective_at"),  # rule 4
    "stripe/10-renew": ("action", "effective_at"),  # rule 4
    "azure/10-renew": ("action", "effective_at"),  # rule 4
    "aws/10-refresh": ("action", "effective_at"),  # rule 5
    "aws/11-create": ("status_after",),  # rule 10
    "aws/13-create": ("status_after", "trial"),  # rule 2
    "stackit/13-cancel-scheduled": ("action", "phase", "status_after"),  # rule 10
    "stackit/14-create-failed": ("action", "effective_at"),  # rule 6
    "gcp/10-create": ("product",),  # rule 7
    "shopify/10-suspend": ("action", "status_after"),  # rule 1
    "omnistrate/10-create": ("action", "account"),  # rules 8 and 9 (not seen by this worker)
}


def _case(name: str) -> tuple[str, bytes, dict[str, Any], dict[str, Any]]:
    folder, stem = name.split("/")
    expected = json.loads((FIXTURES / folder / f"{stem}.expected.json").read_text())
    canonical = expected["canonical"]
    ids = [i for i in (canonical["channel_subscription_id"], canonical.get("channel_event_id")) if i]
    body = (FIXTURES / folder / f"{stem}.json").read_text()
    blob = json.dumps(expected.get("transport") or {})
    fresh_body, fresh_blob = body, blob
    # an SNS id is product:customer; only the customer part is in the body as such
    ids = [i.rsplit(":", 1)[-1].strip() for i in ids]
    for old in ids:
        new = f"{old[:-6]}{uuid.uuid4().hex[:6].upper()}"
        fresh_body, fresh_blob = fresh_body.replace(old, new), fresh_blob.replace(old, new)
        canonical = json.loads(json.dumps(canonical).replace(old, new))
    return expected["channel"], fresh_body.encode(), json.loads(fresh_blob), canonical


async def _recorded(db: Database, channel: str, channel_subscription_id: str) -> list[dict[str, Any]]:
    rows = await db.pool.fetch(
        "SELECT canonical FROM intake.orders WHERE channel = $1 AND canonical->>'channel_subscription_id' = $2 "
        "ORDER BY received_at, order_key",
        channel,
        channel_subscription_id,
    )
    return [json.loads(r["canonical"]) if isinstance(r["canonical"], str) else r["canonical"] for r in rows]


async def _until_recorded(db: Database, channel: str, sid: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        found = await _recorded(db, channel, sid)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def test_rule_fixtures_and_snapshot_mapping_through_the_worker(
    settings: Settings, db: Database
) -> None:
    cases = {name: _case(name) for name in RULE_CASES}
    azure_sid = str(uuid.uuid4())
    resolve = (FIXTURES / "azure" / "01-create.json").read_text()
    snapshot = (FIXTURES / "azure" / "11-activate.json").read_text()
    old_sid = "6f1d2c7e-3b9a-4e51-9c2f-8a7d0e41b5c3"
    async with running_workers(settings, db, names=("intake",)):
        for channel, body, transport, canonical in cases.values():
            await publish(
                settings,
                topics.inbound(channel),
                body,
                key=canonical["channel_subscription_id"],
                headers=transport_headers(transport),
            )
        await publish(
            settings, topics.inbound("azure_marketplace"), resolve.replace(old_sid, azure_sid).encode()
        )
        first = await _until_recorded(db, "azure_marketplace", azure_sid)
        # the same subscription, now subscribed, as a bare GET snapshot: no transport context at all
        await publish(
            settings, topics.inbound("azure_marketplace"), snapshot.replace(old_sid, azure_sid).encode()
        )
        azure = await _until_recorded(db, "azure_marketplace", azure_sid, 2)
        recorded = {
            name: await _until_recorded(db, channel, canonical["channel_subscription_id"])
            for name, (channel, _, _, canonical) in cases.items()
        }
    assert [(c["action"], c["phase"], c["status_after"]) for c in first] == [
        ("create", "requested", "pending")
    ]
    assert [(c["action"], c["status_after"]) for c in azure] == [
        ("create", "pending"),
        ("activate", "active"),
    ]
    for name, fields in RULE_CASES.items():
        want = cases[name][3]
        assert len(recorded[name]) == 1, f"{name}: recorded once"
        got = recorded[name][0]
        assert {f: got[f] for f in fields} == {f: want[f] for f in fields}, name


async def test_forged_azure_tokens_and_sns_signatures_are_refused_by_the_worker(
    settings: Settings, db: Database
) -> None:
    import sys

    sys.path.insert(0, str(UNIT))
    from signing_keys import certificate_pem, jwt, public_pem, sign_sns

    audience = "azure-app-under-test"
    cert_url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"
    checked = settings.model_copy(
        update={
            "azure_webhook_keys": public_pem(),
            "azure_webhook_audience": audience,
            "aws_sns_verify": True,
            "aws_sns_certificates": json.dumps({cert_url: certificate_pem()}),
        }
    )
    now = int(time.time())
    claims = {"aud": audience, "iat": now, "exp": now + 600}
    azure_ids = {k: str(uuid.uuid4()) for k in ("good", "forged")}
    azure_body = (FIXTURES / "azure" / "05-cancel.json").read_text()
    old_azure = json.loads(azure_body)["subscriptionId"]

    def azure(which: str) -> bytes:
        doc = json.loads(azure_body.replace(old_azure, azure_ids[which]))
        doc["id"] = str(uuid.uuid4())
        return json.dumps(doc).encode()

    customers = {k: f"X{uuid.uuid4().hex[:12]}" for k in ("good", "forged")}

    def sns(which: str) -> bytes:
        inner = {
            "action": "subscribe-success",
            "customer-identifier": customers[which],
            "product-code": "4kq8xw2m7n3bz5yt0vp6cd1ra",
        }
        message = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:us-east-1:287250355862:aws-mp-subscription-notification-4kq8xw2m7n3bz5yt0vp6cd1ra",
            "Message": json.dumps(inner),
            "Timestamp": "2025-04-22T13:05:41.227Z",
            "SigningCertURL": cert_url,
        }
        signed = sign_sns(message)
        if which == "forged":  # signed, then altered: the quantity of trust is zero
            signed["Message"] = signed["Message"].replace("subscribe-success", "subscribe-fail")
        return json.dumps(signed).encode()

    bootstrap = str(settings.kafka_bootstrap)
    async with running_workers(checked, db, names=("intake",)):
        async with TopicReader(bootstrap, f"{settings.topic_namespace}{topics.ORDERS_REJECTED}") as rejected:
            await publish(
                settings,
                topics.inbound("azure_marketplace"),
                azure("forged"),
                headers={"http.Authorization": f"Bearer {jwt(claims, name='b', kid=None)}"},
            )
            await publish(
                settings,
                topics.inbound("azure_marketplace"),
                azure("good"),
                headers={"http.Authorization": f"Bearer {jwt(claims, kid=None)}"},
            )
            await publish(settings, topics.inbound("aws_marketplace"), sns("forged"))
            await publish(settings, topics.inbound("aws_marketplace"), sns("good"))
            await rejected.wait_for(2, timeout=20)
            good_azure = await _until_recorded(db, "azure_marketplace", azure_ids["good"])
            good_aws = await _until_recorded(
                db, "aws_marketplace", f"4kq8xw2m7n3bz5yt0vp6cd1ra:{customers['good']}"
            )
            await rejected.settle(0.5)
    refusals = [v["data"] for v in rejected.values()]
    assert sorted((r["channel"], r["reasons"][0]["code"]) for r in refusals) == [
        ("aws_marketplace", "SIGNATURE_INVALID"),
        ("azure_marketplace", "SIGNATURE_INVALID"),
    ]
    assert all(r["channel_subscription_id"] is None for r in refusals), (
        "nothing of a forged payload is trusted"
    )
    assert [c["action"] for c in good_azure] == ["cancel"]
    assert [c["action"] for c in good_aws] == ["create"]
    assert await _recorded(db, "azure_marketplace", azure_ids["forged"]) == []
    assert await _recorded(db, "aws_marketplace", f"4kq8xw2m7n3bz5yt0vp6cd1ra:{customers['forged']}") == []
