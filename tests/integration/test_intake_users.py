"""Users from channel events (issue 12 item 12) through the real workers, broker and PostgreSQL.

An Azure subscription whose purchaser is not its beneficiary: intake names both on the create
command, the lifecycle carries them in its snapshot, and the entitlements worker records the
beneficiary (the ordering customer) as ``owner`` and the purchaser as ``admin``, the latter audited
with the channel as actor. ``som subscriptions show`` reads the same rows.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.entitlements import views
from shared.contracts.envelope import derived_id
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from shared.timekeeping import create_clock
from tests.integration.helpers import publish, running_workers

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "channels"


async def test_azure_purchaser_and_beneficiary_become_subscription_users(
    settings: Settings, db: Database
) -> None:
    sid = str(uuid.uuid4())
    doc = json.loads((FIXTURES / "azure/01-create.json").read_text())
    doc["id"] = doc["subscription"]["id"] = sid
    beneficiary = f"user-{sid[:8]}@tenant.example"
    purchaser = f"Buyer-{sid[:8]}@Procurement.example"
    doc["subscription"]["beneficiary"].update({"objectId": str(uuid.uuid4()), "emailId": beneficiary})
    doc["subscription"]["purchaser"].update({"objectId": str(uuid.uuid4()), "emailId": purchaser})
    doc["subscription"]["term"]["startDate"] = "2025-07-01T00:00:00Z"
    clock = f"{settings.topic_namespace}clock"
    await create_clock(db.pool, clock, datetime(2025, 8, 1, tzinfo=UTC))
    subscription = derived_id("subscription", "azure_marketplace", sid)
    async with running_workers(settings, db, names=("intake", "lifecycle", "entitlements")):
        await publish(
            settings,
            topics.inbound("azure_marketplace"),
            json.dumps(doc).encode(),
            key=sid,
            headers={"som-test-clock": clock},
        )
        for _ in range(150):
            if len(await views.users(db.pool, subscription)) == 2:
                break
            await asyncio.sleep(0.2)
        users = await views.users(db.pool, subscription)
        audit = await views.user_audit(db.pool, subscription)
        snapshot = await db.pool.fetchval(
            "SELECT state->'commercial'->'users' FROM lifecycle.subscriptions WHERE subscription_id = $1",
            subscription,
        )
    assert sorted((u["email"], u["role"]) for u in users) == sorted(
        [(beneficiary, "owner"), (purchaser.lower(), "admin")]
    )
    by_email = {a["email"]: a for a in audit}
    assert len(audit) == 2
    assert by_email[purchaser.lower()]["actor"] == "channel:azure_marketplace"
    assert by_email[purchaser.lower()]["reason"] == "purchaser named by azure_marketplace"
    assert by_email[beneficiary]["reason"] == "ordering customer"
    assert snapshot is not None and "purchaser" in str(snapshot)
