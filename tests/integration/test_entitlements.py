"""Entitlements through the real lifecycle and entitlements workers, and the ``som entitlements`` CLI.

One customer with two subscriptions on a test clock: the merged customer set, a pause of one while
the other keeps full access, a period-end downgrade shown as pending and then applied, a grant with
an expiry applied by a timer exactly once, the history answering for past instants, the history
refusing changes, snapshot and reconcile. Then concurrent changes to one customer losing nothing.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from shared.contracts import events as ev
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from shared.timekeeping import advance_clock, create_clock
from som.runner import child_env
from tests.integration.helpers import TopicReader, running_workers
from tests.integration.test_billing_dunning import command, eventually, fast

pytestmark = pytest.mark.integration

WORKERS = ("lifecycle", "entitlements")


async def som(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI against the test's broker and database."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "som", *args],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def som_json(settings: Settings, *args: str) -> dict[str, Any]:
    done = await som(settings, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def customer_events(reader: TopicReader, customer: str) -> list[dict[str, Any]]:
    return [v for v in reader.values() if v["subject"] == customer]


async def customer_set_where(reader: TopicReader, customer: str, what: str, check: Any) -> dict[str, Any]:
    """Wait for a customer event whose data satisfies ``check``; return that data."""

    async def probe() -> dict[str, Any] | None:
        await reader.poll(0.1)
        found = [v["data"] for v in customer_events(reader, customer) if check(v["data"])]
        return found[-1] if found else None

    return await eventually(probe, what=what, timeout=30)  # type: ignore[no-any-return]


async def test_customer_view_policy_pending_grant_history_snapshot_and_reconcile(
    settings: Settings, db: Database
) -> None:
    settings = fast(settings)
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    clock = f"{ns}ent"
    start = datetime(2025, 3, 1, 9, tzinfo=UTC)
    await create_clock(db.pool, clock, start)
    cus = f"cus-{uuid.uuid4().hex[:8]}"
    customer = ev.Customer(customer_id=cus, email="e@customer.example")
    a, b = f"sub-a-{uuid.uuid4().hex[:6]}", f"sub-b-{uuid.uuid4().hex[:6]}"
    async with (
        running_workers(settings, db, names=WORKERS),
        TopicReader(bootstrap, f"{ns}{topics.ENTITLEMENTS_CUSTOMERS}") as customers,
        TopicReader(bootstrap, f"{ns}{topics.ENTITLEMENTS_CHANGED}") as subs,
    ):
        await command(
            settings, "create", a, at=start, clock=clock, plan_id="starter", quantity=1, customer=customer
        )
        await command(
            settings, "create", b, at=start, clock=clock, plan_id="pro", quantity=2, customer=customer
        )
        both = await customer_set_where(
            customers, cus, "both subscriptions", lambda d: len(d["subscriptions"]) == 2
        )
        assert set(both["features"]) == {"api_access", "email_support", "sso", "audit_log"}
        assert both["limits"]["storage_gb"] == 10 + 2 * 250 and both["limits"]["projects"] == 25
        assert both["access"] == "full" and both["instances"] == 6
        versions = [
            (d["previous_version"], d["version"])
            for d in (v["data"] for v in customer_events(customers, cus))
        ]
        assert versions == [(n - 1, n) for n in range(1, len(versions) + 1)]  # gap-free chain

        # Upgrade A to pro, then an add-on: the customer's storage grows with each.
        await advance_clock(db.pool, bootstrap, ns, clock, start + timedelta(days=1), services=WORKERS)
        await command(
            settings, "change_plan", a, at=start + timedelta(days=1), plan_id="pro", timing="immediate"
        )
        await command(
            settings, "add_addon", a, at=start + timedelta(days=1, hours=1), addon_plan_id="extra-storage"
        )
        grown = await customer_set_where(
            customers, cus, "upgrade and add-on", lambda d: d["limits"]["storage_gb"] == 250 + 100 + 500
        )
        assert grown["instances"] == 10

        # Pause B: held (existing things stay, nothing new); A keeps the customer at full access.
        paused_at = start + timedelta(days=3)
        await advance_clock(db.pool, bootstrap, ns, clock, paused_at, services=WORKERS)
        await command(settings, "pause", b, at=paused_at)
        await customer_set_where(subs, b, "b held", lambda d: d["access"] == "held")
        sub_b = await som_json(settings, "entitlements", "show", cus, "--subscription", b)
        assert sub_b["body"]["access"] == "held" and sub_b["body"]["can_create_instances"] is False
        now = await som_json(settings, "entitlements", "show", cus)
        assert now["body"]["access"] == "full" and now["body"]["can_create_instances"] is True
        await command(settings, "resume", b, at=paused_at + timedelta(hours=1))

        # A period-end downgrade of B: pending in advance, applied at the period end.
        await command(
            settings,
            "change_plan",
            b,
            at=paused_at + timedelta(hours=2),
            plan_id="starter",
            timing="period_end",
        )
        pending = await customer_set_where(
            customers,
            cus,
            "pending downgrade",
            lambda d: any(p["kind"] == "plan_change" for p in d["pending"]),
        )
        change = next(p for p in pending["pending"] if p["kind"] == "plan_change")
        assert change["to_plan_id"] == "starter" and change["subscription_id"] == b
        assert "sso" in pending["features"]

        # A grant for three days (customer-wide), expiring by a timer.
        grant_from = paused_at + timedelta(days=1)
        done = await som(
            settings, "entitlements", "grant", cus, "--feature", "priority_support", "--reason", "goodwill",
            "--from", grant_from.isoformat(), "--until", (grant_from + timedelta(days=3)).isoformat(),
            "--actor", "ops",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        granted = await customer_set_where(
            customers,
            cus,
            "grant recorded",
            lambda d: any(p["kind"] == "override_start" for p in d["pending"]),
        )
        assert "priority_support" not in granted["features"]
        await advance_clock(db.pool, bootstrap, ns, clock, grant_from + timedelta(hours=1), services=WORKERS)
        with_grant = await customer_set_where(
            customers, cus, "grant in force", lambda d: "priority_support" in d["features"]
        )
        assert with_grant["overrides"] and with_grant["access"] == "full"
        await advance_clock(db.pool, bootstrap, ns, clock, grant_from + timedelta(days=4), services=WORKERS)
        expired = await customer_set_where(
            customers,
            cus,
            "grant expired",
            lambda d: "priority_support" not in d["features"] and d["version"] > with_grant["version"],
        )
        assert expired["overrides"] == []
        ended = await db.pool.fetchval(
            "SELECT count(*) FROM entitlements.history WHERE customer_id = $1 AND scope = 'customer' "
            "AND cause_command = 'recompute' AND NOT body->'features' ? 'priority_support' "
            "AND effective_at = $2",
            cus,
            grant_from + timedelta(days=3),
        )
        assert ended == 1  # the expiry applied once

        # The period end: the downgrade applies, the pending entry is gone.
        await advance_clock(
            db.pool, bootstrap, ns, clock, datetime(2025, 4, 2, 12, tzinfo=UTC), services=WORKERS
        )
        applied = await customer_set_where(
            subs, b, "downgrade applied", lambda d: d["plan_id"] == "starter" and d["pending"] == []
        )
        assert "sso" not in applied["features"] and applied["limits"]["storage_gb"] == 10
        merged = await customer_set_where(
            customers, cus, "downgrade merged", lambda d: d["limits"]["storage_gb"] == 350 + 10
        )
        assert merged["pending"] == [] and "sso" in merged["features"]  # A (pro) still grants it

        # History answers for past instants, with the cause.
        first = await som_json(settings, "entitlements", "show", cus, "--at", start.isoformat())
        assert "sso" in first["body"]["features"] and first["cause_command"] == "create"
        during = await som_json(
            settings, "entitlements", "show", cus, "--at", (grant_from + timedelta(days=1)).isoformat()
        )
        assert "priority_support" in during["body"]["features"] and during["cause_actor"] == "system:timer"
        paused = await som_json(
            settings,
            "entitlements",
            "show",
            cus,
            "--subscription",
            b,
            "--at",
            (paused_at + timedelta(minutes=30)).isoformat(),
        )
        assert paused["body"]["access"] == "held" and paused["cause_command"] == "pause"
        before = await som(settings, "entitlements", "show", cus, "--at", "2025-01-01")
        assert before.returncode == 3

        # The history refuses changes.
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await db.pool.execute(
                "UPDATE entitlements.history SET cause_actor = 'x' WHERE customer_id = $1", cus
            )
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await db.pool.execute("DELETE FROM entitlements.overrides WHERE customer_id = $1", cus)

        # Snapshot: the current sets again, versions unchanged.
        current = await som_json(settings, "entitlements", "show", cus)
        done = await som(settings, "entitlements", "snapshot", "--customer", cus)
        assert done.returncode == 0, done.stderr
        snap = await eventually(lambda: _snapshot(customers, cus), what="customer snapshot", timeout=30)
        assert snap["version"] == current["version"] and snap["features"] == current["body"]["features"]

        # Reconcile: nothing to do; a corrupted set is one drift, repaired with a new version.
        clean = await som_json(settings, "entitlements", "reconcile", "--dry-run", "--customer", cus)
        assert clean["drift"] == []
        # No provisioning acknowledges here: every set is behind downstream.
        assert {d["subscription_id"] for d in clean["downstream_behind"]} == {a, b}
        a_version = (await som_json(settings, "entitlements", "show", cus, "--subscription", a))["version"]
        await db.pool.execute(
            "UPDATE entitlements.entitlement_sets SET body = jsonb_set(body, '{features}', '[]') "
            "WHERE subscription_id = $1",
            a,
        )
        dirty = await som_json(settings, "entitlements", "reconcile", "--dry-run", "--customer", cus)
        assert [(d["subscription_id"], d["fields"]) for d in dirty["drift"]] == [(a, ["features"])]
        repaired = await som_json(settings, "entitlements", "reconcile", "--customer", cus)
        assert len(repaired["drift"]) == 1

        async def a_repaired() -> bool:
            await subs.poll(0.1)
            return any(
                v["subject"] == a and v["data"]["features"] and v["data"]["version"] == a_version + 1
                for v in subs.values()
            )

        await eventually(a_repaired, what="repaired set published", timeout=30)
        again = await som_json(settings, "entitlements", "reconcile", "--dry-run", "--customer", cus)
        assert again["drift"] == []


async def _snapshot(reader: TopicReader, customer: str) -> dict[str, Any] | None:
    await reader.poll(0.1)
    found = [
        v["data"]
        for v in reader.values()
        if v["subject"] == customer and v["type"] == ev.CUSTOMER_ENTITLEMENTS_SNAPSHOT
    ]
    return found[-1] if found else None


async def test_concurrent_changes_to_one_customers_subscriptions_lose_nothing(
    settings: Settings, db: Database
) -> None:
    settings = fast(settings)
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    cus = f"cus-{uuid.uuid4().hex[:8]}"
    customer = ev.Customer(customer_id=cus)
    at = datetime(2025, 5, 1, 9, tzinfo=UTC)
    subs = [f"sub-c{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]  # spread over the partitions (3 lanes)
    async with (
        running_workers(settings, db, names=WORKERS),
        TopicReader(bootstrap, f"{ns}{topics.ENTITLEMENTS_CUSTOMERS}") as customers,
    ):
        await asyncio.gather(
            *(
                command(settings, "create", s, at=at, plan_id="starter", quantity=1, customer=customer)
                for s in subs
            )
        )
        final = await customer_set_where(customers, cus, "all six", lambda d: len(d["subscriptions"]) == 6)
        assert final["limits"]["storage_gb"] == 6 * 10 and final["instances"] == 6
        chain = sorted(
            (d["version"], d["previous_version"])
            for d in (v["data"] for v in customer_events(customers, cus))
        )
        assert chain == [(n, n - 1) for n in range(1, len(chain) + 1)]
    stored = await db.pool.fetchval(
        "SELECT version FROM entitlements.customer_sets WHERE customer_id = $1", cus
    )
    history = await db.pool.fetchval(
        "SELECT count(*) FROM entitlements.history WHERE customer_id = $1 AND scope = 'customer'", cus
    )
    assert stored == len(chain) == history


async def http_get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """A plain HTTP/1.1 GET on localhost."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_check_api_answers_from_memory_and_flags_stale_when_the_database_is_down(
    settings: Settings, db: Database
) -> None:
    from services.entitlements.projection import FAULT_POINT
    from shared.health import HealthServer
    from shared.messaging.faults import faults

    cus = f"cus-{uuid.uuid4().hex[:8]}"
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    at = datetime(2025, 6, 1, 9, tzinfo=UTC)
    async with running_workers(settings, db, names=WORKERS) as workers:
        worker = workers["entitlements"]
        server = HealthServer(worker.readiness, host="127.0.0.1", port=0, routes=worker.http)
        port = await server.start()
        try:
            status, missing = await http_get(port, f"/v1/customers/{cus}/entitlements")
            assert status == 404 and missing["customer_id"] == cus
            await command(
                settings,
                "create",
                sub,
                at=at,
                plan_id="pro",
                quantity=1,
                customer=ev.Customer(customer_id=cus),
            )

            async def known() -> dict[str, Any] | None:
                code, doc = await http_get(port, f"/v1/customers/{cus}/entitlements")
                return doc if code == 200 else None

            doc = await eventually(known, what="set in the projection", timeout=30)
            assert doc["version"] == 1 and "sso" in doc["features"] and doc["stale"] is False and doc["as_of"]
            code, sso = await http_get(port, f"/v1/customers/{cus}/entitlements/sso")
            assert code == 200 and sso["enabled"] is True and sso["kind"] == "boolean"
            code, storage = await http_get(port, f"/v1/customers/{cus}/entitlements/storage_gb")
            assert storage["kind"] == "limit" and storage["limit"] == 250
            code, nothing = await http_get(port, f"/v1/customers/{cus}/entitlements/dedicated_instance")
            assert nothing["enabled"] is False

            faults.arm(FAULT_POINT, times=1_000_000)
            try:

                async def stale() -> dict[str, Any] | None:
                    code, doc = await http_get(port, f"/v1/customers/{cus}/entitlements")
                    return doc if code == 200 and doc["stale"] else None

                last_known = await eventually(stale, what="stale answer", timeout=30)
                assert last_known["version"] == 1 and "sso" in last_known["features"]
            finally:
                faults.disarm()

            async def fresh() -> dict[str, Any] | None:
                code, doc = await http_get(port, f"/v1/customers/{cus}/entitlements")
                return doc if code == 200 and not doc["stale"] else None

            await eventually(fresh, what="fresh again", timeout=30)
            assert (await http_get(port, "/v1/nothing"))[0] == 404
        finally:
            await server.stop()


async def publish_event(settings: Settings, topic: str, type_: str, subject: str, data: Any) -> None:
    """Publish a CloudEvent as provisioning would."""
    from shared.contracts.envelope import make_event
    from tests.integration.helpers import publish

    corr = f"test-{uuid.uuid4()}"
    event = make_event(
        type=type_,
        source="tests/provisioning",
        subject=subject,
        data=data,
        correlation_id=corr,
        causation_id=corr,
    )
    await publish(settings, topic, event.model_dump_json().encode(), key=subject, headers={"ce_id": event.id})


async def test_unacknowledged_changes_are_republished_and_violations_and_instructions_flow(
    settings: Settings, db: Database
) -> None:
    from services.entitlements import metrics

    settings = settings.model_copy(update={"entitlement_ack_timeout_seconds": 0.5})
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    cus = f"cus-{uuid.uuid4().hex[:8]}"
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    at = datetime(2025, 7, 1, 9, tzinfo=UTC)
    async with (
        running_workers(settings, db, names=WORKERS),
        TopicReader(bootstrap, f"{ns}{topics.ENTITLEMENTS_CHANGED}") as sets,
        TopicReader(bootstrap, f"{ns}{topics.ENTITLEMENTS_VIOLATION}") as violations,
        TopicReader(bootstrap, f"{ns}{topics.ENTITLEMENTS_INSTRUCTIONS}") as instructions,
    ):
        await command(
            settings,
            "create",
            sub,
            at=at,
            plan_id="starter",
            quantity=1,
            customer=ev.Customer(customer_id=cus),
        )

        def copies(version: int) -> int:
            return sum(1 for v in sets.values() if v["subject"] == sub and v["data"]["version"] == version)

        async def republished(version: int) -> bool:
            await sets.poll(0.1)
            return copies(version) >= 3

        await eventually(lambda: republished(1), what="v1 re-published while unacknowledged", timeout=30)
        assert metrics.UNACKNOWLEDGED.labels("set")._value.get() > 0

        await publish_event(
            settings, topics.ENTITLEMENTS_APPLIED, ev.ENTITLEMENTS_APPLIED, sub,
            ev.EntitlementsApplied(subscription_id=sub, version=1),
        )  # fmt: skip

        async def acked() -> bool:
            return bool(
                await db.pool.fetchval(
                    "SELECT applied_version = 1 FROM entitlements.entitlement_sets WHERE subscription_id = $1",
                    sub,
                )
            )

        await eventually(acked, what="acknowledgement recorded")
        await sets.settle(1.0)
        settled = copies(1)
        await sets.settle(2.0)  # four timeouts: an acknowledged version is not sent again
        assert copies(1) == settled

        # Pause: held, a block-new-instances instruction, itself re-sent until acknowledged.
        await command(settings, "pause", sub, at=at + timedelta(days=2))

        async def block() -> list[dict[str, Any]]:
            await instructions.poll(0.1)
            return [
                v["data"]
                for v in instructions.values()
                if v["data"]["kind"] == "block_new_instances" and v["subject"] == sub
            ]

        blocks = await eventually(block, what="block instruction")
        await eventually(lambda: _at_least(block, 2), what="block re-sent", timeout=30)
        # An older acknowledgement does not clear the paused set's version 2.
        await publish_event(
            settings, topics.ENTITLEMENTS_APPLIED, ev.ENTITLEMENTS_APPLIED, sub,
            ev.EntitlementsApplied(subscription_id=sub, version=1, instruction_id=blocks[0]["instruction_id"]),
        )  # fmt: skip

        async def instruction_acked() -> bool:
            return bool(
                await db.pool.fetchval(
                    "SELECT acknowledged_at IS NOT NULL FROM entitlements.instructions WHERE instruction_id = $1",
                    blocks[0]["instruction_id"],
                )
            )

        await eventually(instruction_acked, what="instruction acknowledged")
        before = copies(2)
        await sets.settle(1.5)
        assert copies(2) > before  # v2 still unacknowledged: still re-sent

        # Two instances running where starter allows one: a violation.
        for n in (1, 2):
            await publish_event(
                settings, topics.PROVISIONING_INSTANCES, "som.provisioning.instance_reported", sub,
                ev.InstanceReported(subscription_id=sub, instance_id=f"i-{n}", status="running", reported_at=at + timedelta(days=3, minutes=n)),
            )  # fmt: skip

        async def violated() -> dict[str, Any] | None:
            await violations.poll(0.1)
            found = [v["data"] for v in violations.values() if v["subject"] == sub]
            return found[-1] if found else None

        violation = await eventually(violated, what="violation")
        assert (
            violation["allowed"] == 1
            and violation["running"] == 2
            and violation["instance_ids"] == ["i-1", "i-2"]
        )
        assert (
            len([v for v in violations.values() if v["subject"] == sub]) == 1
        )  # the first report was within

        # Cancelled: read-only for the 30-day grace period, then revoked (a timer; the wall clock is long past
        # it here, so at once): the allowance drops to none while both still run, and data cleanup is due.
        await command(settings, "cancel", sub, at=at + timedelta(days=4), timing="immediate")

        async def shrunk() -> dict[str, Any] | None:
            await violations.poll(0.1)
            found = [
                v["data"] for v in violations.values() if v["subject"] == sub and v["data"]["allowed"] == 0
            ]
            return found[-1] if found else None

        got = await eventually(shrunk, what="violation after the end")
        assert got["running"] == 2 and got["detected_at"].startswith(
            "2025-08-04"
        )  # the grace end, by its timer

        async def cleanup() -> list[dict[str, Any]]:
            await instructions.poll(0.1)
            return [
                v["data"]
                for v in instructions.values()
                if v["data"]["kind"] == "data_cleanup" and v["subject"] == sub
            ]

        assert (await eventually(cleanup, what="data cleanup after the grace period"))[0][
            "effective_at"
        ].startswith("2025-08-04")


async def _at_least(probe: Any, n: int) -> bool:
    return len(await probe()) >= n


async def test_usage_counts_once_per_id_and_raises_each_threshold_once_per_period(
    settings: Settings, db: Database
) -> None:
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    cus = f"cus-{uuid.uuid4().hex[:8]}"
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    day = datetime(2025, 8, 1, 9, tzinfo=UTC)
    async with (
        running_workers(settings, db, names=WORKERS),
        TopicReader(bootstrap, f"{ns}{topics.ENTITLEMENTS_USAGE}") as usage,
        TopicReader(bootstrap, f"{ns}{topics.ENTITLEMENTS_CUSTOMERS}") as customers,
    ):
        await command(
            settings,
            "create",
            sub,
            at=day,
            plan_id="starter",
            quantity=1,
            customer=ev.Customer(customer_id=cus),
        )
        await customer_set_where(
            customers, cus, "set", lambda d: d["limits"].get("api_calls_per_day") == 10000
        )

        async def report(usage_id: str, quantity: int, at: datetime) -> None:
            await publish_event(
                settings, topics.USAGE_REPORTED, ev.USAGE_REPORTED, cus,
                ev.UsageReported(usage_id=usage_id, customer_id=cus, subscription_id=sub,
                                 feature="api_calls_per_day", quantity=quantity, occurred_at=at),
            )  # fmt: skip

        for usage_id, quantity, at in (
            ("u1", 7000, day),
            ("u1", 7000, day),  # the same report again, in a new envelope: counted once
            ("u2", 1500, day),  # 8500: 80 %
            ("u3", 2000, day),  # 10500: 100 %
            ("u4", 100, day),  # nothing new
            ("u5", 9000, day + timedelta(days=1)),  # a new day: the counter reset, 80 % again
        ):
            await report(usage_id, quantity, at)

        async def thresholds() -> list[tuple[str, int, int]] | None:
            await usage.poll(0.1)
            found = [
                (v["data"]["period_start"], v["data"]["threshold"], v["data"]["used"]) for v in usage.values()
            ]
            return found if len(found) >= 3 else None

        await eventually(thresholds, what="three threshold events", timeout=30)
        await usage.settle(1.0)
        found = sorted(
            (v["data"]["period_start"], v["data"]["threshold"], v["data"]["used"]) for v in usage.values()
        )
        assert found == [("2025-08-01", 80, 8500), ("2025-08-01", 100, 10500), ("2025-08-02", 80, 9000)]
    counters = await db.pool.fetch(
        "SELECT period_start, used FROM entitlements.usage_counters WHERE customer_id = $1 ORDER BY period_start",
        cus,
    )
    assert [(str(r["period_start"]), r["used"]) for r in counters] == [
        ("2025-08-01", 10600),
        ("2025-08-02", 9000),
    ]


async def test_users_and_roles_through_the_cli_limit_the_per_user_check(
    settings: Settings, db: Database
) -> None:
    from shared.health import HealthServer

    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    cus = f"cus-{uuid.uuid4().hex[:8]}"
    pro, starter = f"sub-p-{uuid.uuid4().hex[:6]}", f"sub-s-{uuid.uuid4().hex[:6]}"
    at = datetime(2025, 9, 1, 9, tzinfo=UTC)
    async with (
        running_workers(settings, db, names=WORKERS) as workers,
        TopicReader(bootstrap, f"{ns}{topics.ENTITLEMENTS_CUSTOMERS}") as customers,
    ):
        worker = workers["entitlements"]
        server = HealthServer(worker.readiness, host="127.0.0.1", port=0, routes=worker.http)
        port = await server.start()
        try:
            customer = ev.Customer(customer_id=cus, email="Buyer@Example.com")
            await command(settings, "create", pro, at=at, plan_id="pro", quantity=1, customer=customer)
            await command(
                settings, "create", starter, at=at, plan_id="starter", quantity=1, customer=customer
            )
            await customer_set_where(
                customers, cus, "two subscriptions", lambda d: len(d["subscriptions"]) == 2
            )
            for args in (
                (
                    "add",
                    pro,
                    "Alice@Example.com",
                    "--role",
                    "owner",
                    "--actor",
                    "ops",
                    "--reason",
                    "purchaser",
                ),
                ("add", starter, "alice@example.com", "--role", "editor"),
                ("add", pro, "bob@example.com", "--role", "reader"),
            ):
                done = await som(settings, "subscriptions", "users", *args)
                assert done.returncode == 0, done.stderr

            async def user(email: str, present: bool = True) -> dict[str, Any] | None:
                code, doc = await http_get(port, f"/v1/customers/{cus}/users/{email}/entitlements")
                if present:
                    return (
                        doc
                        if code == 200
                        and len(doc.get("roles", {})) >= (2 if email.startswith(("alice", "buyer")) else 1)
                        else None
                    )
                return doc if code == 404 else None

            alice = await eventually(lambda: user("alice@example.com"), what="alice's check", timeout=30)
            assert alice["roles"] == {pro: "owner", starter: "editor"}
            assert alice["can_create_instances"] is True and "sso" in alice["features"]
            bob = await eventually(lambda: user("bob@example.com"), what="bob's check", timeout=30)
            assert (
                bob["access"] == "read_only"
                and bob["can_create_instances"] is False
                and bob["writable"] is False
            )
            assert "sso" in bob["features"] and bob["roles"] == {pro: "reader"}

            done = await som(
                settings, "subscriptions", "users", "remove", pro, "bob@example.com", "--reason", "left"
            )
            assert done.returncode == 0, done.stderr
            await eventually(lambda: user("bob@example.com", present=False), what="bob removed", timeout=30)
            buyer = await eventually(
                lambda: user("buyer@example.com", present=True), what="buyer", timeout=30
            )
            assert buyer["roles"] == {pro: "owner", starter: "owner"}
            missing = await som(settings, "subscriptions", "users", "add", "sub-unknown", "x@example.com")
            assert missing.returncode == 3
        finally:
            await server.stop()
    audit = await db.pool.fetch(
        "SELECT email, action, role, actor, reason FROM entitlements.user_audit WHERE customer_id = $1 ORDER BY id",
        cus,
    )
    assert sorted((r["email"], r["actor"]) for r in audit[:2]) == [  # the buyer, from the order
        ("buyer@example.com", "user:test"),
        ("buyer@example.com", "user:test"),
    ]
    audit = audit[2:]
    assert [(r["email"], r["action"], r["role"]) for r in audit] == [
        ("alice@example.com", "add", "owner"),
        ("alice@example.com", "add", "editor"),
        ("bob@example.com", "add", "reader"),
        ("bob@example.com", "remove", None),
    ]
    assert (
        audit[0]["actor"] == "user:ops" and audit[0]["reason"] == "purchaser" and audit[3]["reason"] == "left"
    )


async def test_a_catalog_edit_reaches_existing_sets_through_reconcile_unless_grandfathered(
    settings: Settings, db: Database, tmp_path: Any
) -> None:
    import yaml

    from shared.catalog import load_catalog

    base = load_catalog().model_dump(mode="json")
    plain, dated = json.loads(json.dumps(base)), json.loads(json.dumps(base))
    for raw, edit in ((plain, "plain"), (dated, "dated")):
        for plan in raw["plans"]:
            if plan["id"] == "starter" and edit == "plain":
                plan["features"] = [*plan["features"], "sso"]
            if plan["id"] == "starter" and edit == "dated":  # only for subscriptions started from 2026
                plan["grant_versions"] = [{"effective_from": "2026-01-01", "features": ["api_access", "sso"]}]
    paths = {}
    for name, raw in (("original", base), ("plain", plain), ("dated", dated)):
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(raw))

    async def reconcile(catalog: str, *args: str) -> dict[str, Any]:
        env = child_env(settings, SOM_CATALOG_PATH=str(paths[catalog]))
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "som", "entitlements", "reconcile", "--customer", cus, "--json", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    cus = f"cus-{uuid.uuid4().hex[:8]}"
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    at = datetime(2025, 10, 1, 9, tzinfo=UTC)
    clock = f"{ns}catalog"  # a test clock: no renewal (the wall clock is past 2025) recomputes meanwhile
    await create_clock(db.pool, clock, at)
    before = settings.model_copy(update={"catalog_path": paths["original"]})
    async with (
        running_workers(before, db, names=WORKERS),
        TopicReader(bootstrap, f"{ns}{topics.ENTITLEMENTS_CUSTOMERS}") as customers,
    ):
        await command(
            settings,
            "create",
            sub,
            at=at,
            clock=clock,
            plan_id="starter",
            quantity=1,
            customer=ev.Customer(customer_id=cus),
        )
        await customer_set_where(customers, cus, "starter set", lambda d: d["subscriptions"] == [sub])
        done = await som(
            settings, "entitlements", "grant", cus, "--feature", "priority_support", "--until", "2099-01-01",
            "--reason", "comp",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        await customer_set_where(customers, cus, "grant", lambda d: "priority_support" in d["features"])

    assert (await reconcile("original", "--dry-run"))["drift"] == []
    assert (await reconcile("dated", "--dry-run"))["drift"] == []  # grandfathered: started before the edit
    drift = (await reconcile("plain", "--dry-run"))["drift"]
    assert sorted((d["subscription_id"] or "customer", d["fields"]) for d in drift) == [
        ("customer", ["features"]),
        (sub, ["features"]),
    ]
    after = settings.model_copy(update={"catalog_path": paths["plain"]})
    async with (
        running_workers(after, db, names=WORKERS),
        TopicReader(bootstrap, f"{ns}{topics.ENTITLEMENTS_CUSTOMERS}") as customers,
    ):
        assert len((await reconcile("plain"))["drift"]) == 2
        repaired = await customer_set_where(customers, cus, "repaired", lambda d: "sso" in d["features"])
        assert "priority_support" in repaired["features"]  # the deliberate grant is not reverted
        assert (await reconcile("plain", "--dry-run"))["drift"] == []
