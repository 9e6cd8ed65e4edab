"""The lifecycle worker under test clocks: renewals, pauses, trials, cancellations, grace periods, approval.

Commands go to ``subscriptions.commands`` as the intake (or an operator) would send them; the
real lifecycle workers and their schedulers run on the real broker and database.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from shared.contracts import events as ev
from shared.contracts.commands import params_for
from shared.contracts.envelope import derived_id, make_event
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from shared.timekeeping import advance_clock, create_clock
from som.runner import child_env
from tests.integration.helpers import TopicReader, publish, running_workers

pytestmark = pytest.mark.integration

LIFECYCLE_ONLY = ("lifecycle",)


async def send(
    settings: Settings,
    command: str,
    subscription_id: str,
    *,
    effective_at: datetime,
    clock: str | None = None,
    plan_id: str | None = None,
    quantity: int | None = None,
    trial: bool = False,
    **fields: Any,
) -> None:
    """Publish one lifecycle command, as intake or an operator does (``fields``: the command's own)."""
    if command == "create":
        fields.update(
            customer=ev.Customer(customer_id=f"cus-test-{uuid.uuid4().hex[:8]}", email="t@customer.example"),
            plan_id=plan_id,
            quantity=quantity,
            billing_interval="P1M",
            currency="USD",
            trial=trial,
            clock=clock,
        )
    cmd = ev.SubscriptionCommand(
        subscription_id=subscription_id,
        idempotency_key=f"test:{uuid.uuid4()}",
        channel="direct",
        effective_at=effective_at,
        actor="user:test",
        params=params_for(command, **fields),
    )
    corr = derived_id("test", cmd.idempotency_key)
    event = make_event(
        type=ev.SUBSCRIPTION_COMMAND,
        source="tests",
        subject=subscription_id,
        data=cmd,
        correlation_id=corr,
        causation_id=corr,
    )
    await publish(
        settings,
        topics.SUBSCRIPTIONS_COMMANDS,
        event.model_dump_json().encode(),
        key=subscription_id,
        headers={"ce_id": event.id},
    )


async def status_of(
    db: Database, subscription_id: str, timeout: float = 15.0, want: str | None = None
) -> str | None:
    """Current status (waits for the subscription, or for ``want``)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await db.pool.fetchval(
            "SELECT status FROM lifecycle.subscriptions WHERE subscription_id = $1", subscription_id
        )
        if (status is not None and want is None) or (want is not None and status == want):
            return str(status)
        if asyncio.get_running_loop().time() > deadline:
            return str(status) if status is not None else None
        await asyncio.sleep(0.1)


async def new_clock(db: Database, settings: Settings, at: datetime) -> str:
    name = f"{settings.topic_namespace}clock-{uuid.uuid4().hex[:6]}"
    await create_clock(db.pool, name, at)
    return name


def _events_of(records: list[Any], subscription_id: str) -> list[dict[str, Any]]:
    out = []
    for r in records:
        doc = json.loads(r.value)
        if doc["subject"] == subscription_id and doc["type"] == ev.SUBSCRIPTION_STATE_CHANGED:
            out.append(doc["data"])
    return out


@pytest.mark.slow  # twelve renewals, each waiting for the whole system to be quiet
async def test_monthly_from_jan_31_renews_twelve_times_once_each_with_two_schedulers(
    settings: Settings, db: Database
) -> None:
    start = datetime(2024, 1, 31, 9, tzinfo=UTC)  # 2024 is a leap year: February ends on the 29th
    clock = await new_clock(db, settings, start)
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    bootstrap = str(settings.kafka_bootstrap)
    async with running_workers(settings, db, names=LIFECYCLE_ONLY) as first:
        async with running_workers(
            settings, db, names=LIFECYCLE_ONLY
        ) as second:  # a second scheduler process
            assert first["lifecycle"] is not second["lifecycle"]
            async with TopicReader(
                bootstrap, f"{settings.topic_namespace}{topics.SUBSCRIPTIONS_EVENTS}"
            ) as out:
                await send(
                    settings, "create", sub, effective_at=start, clock=clock, plan_id="pro", quantity=1
                )
                assert await status_of(db, sub) == "active"
                fired = await advance_clock(
                    db.pool,
                    bootstrap,
                    settings.topic_namespace,
                    clock,
                    datetime(2025, 1, 31, 12, tzinfo=UTC),
                    services=LIFECYCLE_ONLY,
                )
                await out.settle(0.5)
    changes = _events_of(out.records, sub)
    renewals = [c for c in changes if "SubscriptionRenewed" in [e["type"] for e in c["events"]]]
    starts = [c["snapshot"]["current_period_start"] for c in renewals]
    assert starts == [
        "2024-02-29",
        "2024-03-31",
        "2024-04-30",
        "2024-05-31",
        "2024-06-30",
        "2024-07-31",
        "2024-08-31",
        "2024-09-30",
        "2024-10-31",
        "2024-11-30",
        "2024-12-31",
        "2025-01-31",
    ]
    assert len({c["version"] for c in changes}) == len(changes)  # each change emitted once
    renew_timers = await db.pool.fetchval(
        "SELECT count(*) FROM timekeeping.timers WHERE subscription_id = $1 AND kind = 'renewal_due' "
        "AND fired_at IS NOT NULL",
        sub,
    )
    assert renew_timers == 12 and fired >= 12
    audit = await db.pool.fetchval(
        "SELECT count(*) FROM lifecycle.audit_trail WHERE subscription_id = $1 AND command = 'renew'", sub
    )
    assert audit == 12


async def test_pause_with_resume_date_resumes_on_that_date(settings: Settings, db: Database) -> None:
    start = datetime(2025, 3, 1, 8, tzinfo=UTC)
    clock = await new_clock(db, settings, start)
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    async with running_workers(settings, db, names=LIFECYCLE_ONLY):
        await send(settings, "create", sub, effective_at=start, clock=clock, plan_id="starter")
        assert await status_of(db, sub) == "active"
        await send(
            settings,
            "pause",
            sub,
            effective_at=datetime(2025, 3, 10, tzinfo=UTC),
            clock=clock,
            resume_on="2025-03-20",
        )
        assert await status_of(db, sub, want="paused") == "paused"
        await advance_clock(
            db.pool,
            str(settings.kafka_bootstrap),
            settings.topic_namespace,
            clock,
            datetime(2025, 3, 19, 23, tzinfo=UTC),
            services=LIFECYCLE_ONLY,
        )
        assert await status_of(db, sub) == "paused"  # not a day early
        await advance_clock(
            db.pool,
            str(settings.kafka_bootstrap),
            settings.topic_namespace,
            clock,
            datetime(2025, 3, 20, 1, tzinfo=UTC),
            services=LIFECYCLE_ONLY,
        )
        assert await status_of(db, sub, want="active") == "active"
    resumed = await db.pool.fetchrow(
        "SELECT effective_at, actor FROM lifecycle.audit_trail WHERE subscription_id = $1 AND command = 'resume'",
        sub,
    )
    assert resumed["effective_at"].date() == date(2025, 3, 20) and resumed["actor"] == "system:scheduler"


async def test_trial_converts_at_its_end(settings: Settings, db: Database) -> None:
    start = datetime(2025, 5, 1, 12, tzinfo=UTC)
    clock = await new_clock(db, settings, start)
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    async with running_workers(settings, db, names=LIFECYCLE_ONLY):
        await send(settings, "create", sub, effective_at=start, clock=clock, plan_id="pro", trial=True)
        assert await status_of(db, sub) == "trial"  # pro has a 14-day trial
        await advance_clock(
            db.pool,
            str(settings.kafka_bootstrap),
            settings.topic_namespace,
            clock,
            datetime(2025, 5, 16, tzinfo=UTC),
            services=LIFECYCLE_ONLY,
        )
        assert await status_of(db, sub, want="active") == "active"
    state = await db.pool.fetchval(
        "SELECT state FROM lifecycle.subscriptions WHERE subscription_id = $1", sub
    )
    assert (
        state["domain"]["current_period_start"] == "2025-05-15"
    )  # the first paid period starts at trial end


async def test_non_renewing_becomes_cancelled_at_period_end_and_grace_end_fires_cleanup(
    settings: Settings, db: Database
) -> None:
    start = datetime(2025, 6, 15, 12, tzinfo=UTC)
    clock = await new_clock(db, settings, start)
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    bootstrap = str(settings.kafka_bootstrap)
    async with running_workers(settings, db, names=LIFECYCLE_ONLY):
        async with TopicReader(bootstrap, f"{settings.topic_namespace}{topics.SUBSCRIPTIONS_EVENTS}") as out:
            await send(settings, "create", sub, effective_at=start, clock=clock, plan_id="starter")
            assert await status_of(db, sub) == "active"
            await send(
                settings,
                "cancel",
                sub,
                effective_at=datetime(2025, 6, 20, tzinfo=UTC),
                clock=clock,
                timing="period_end",
            )
            assert await status_of(db, sub, want="non_renewing") == "non_renewing"
            await advance_clock(
                db.pool,
                bootstrap,
                settings.topic_namespace,
                clock,
                datetime(2025, 7, 15, 1, tzinfo=UTC),
                services=LIFECYCLE_ONLY,
            )
            assert await status_of(db, sub, want="cancelled") == "cancelled"
            # Terminate: the end is final, and the grace period's end tells provisioning to clean up.
            await send(
                settings, "terminate", sub, effective_at=datetime(2025, 7, 16, tzinfo=UTC), clock=clock
            )
            assert await status_of(db, sub, want="terminated") == "terminated"
            grace_end = await db.pool.fetchval(
                "SELECT due_at FROM timekeeping.timers WHERE subscription_id = $1 AND kind = 'grace_period_end' "
                "AND fired_at IS NULL AND cancelled_at IS NULL",
                sub,
            )
            assert grace_end is not None
            await advance_clock(
                db.pool, bootstrap, settings.topic_namespace, clock, grace_end, services=LIFECYCLE_ONLY
            )
            await out.settle(0.5)
    cleanup = [
        json.loads(r.value)
        for r in out.records
        if json.loads(r.value)["type"] == "som.subscription.data_cleanup_due"
    ]
    assert len(cleanup) == 1 and cleanup[0]["subject"] == sub
    assert cleanup[0]["data"]["snapshot"]["status"] == "terminated"


@pytest.mark.slow  # four `som` child processes, each importing the whole project
async def test_manual_approval_holds_until_som_approve(settings: Settings, db: Database) -> None:
    start = datetime(2025, 9, 1, tzinfo=UTC)
    clock = await new_clock(db, settings, start)
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    async with running_workers(settings, db, names=LIFECYCLE_ONLY):
        # Enterprise plans are on manual approval in the packaged approval policy.
        await send(
            settings, "create", sub, effective_at=start, clock=clock, plan_id="enterprise", quantity=20
        )
        assert await status_of(db, sub) == "pending_approval"
        await asyncio.sleep(1.0)
        assert await status_of(db, sub) == "pending_approval"  # it stays held
        env = child_env(settings)
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "som", "approve", sub, "--actor", "alice", "--reason", "checked"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert await status_of(db, sub, want="active") == "active"
        missing = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "som", "approve", "no-such-subscription"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert missing.returncode == 3 and "Traceback" not in missing.stderr
        listed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "som", "subscriptions", "list", "--plan", "enterprise", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        rows = {r["subscription_id"]: r for r in json.loads(listed.stdout)}
        assert rows[sub]["status"] == "active" and rows[sub]["quantity"] == "20"
        assert rows[sub]["next_renewal"] == "2025-10-01"
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "som", "subscriptions", "show", sub],
            env={**env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        assert "enterprise x 20" in shown.stdout and "pending_approval" in shown.stdout  # audit history
        assert "renewal_due" in shown.stdout and "owner" in shown.stdout  # timers, users and roles
    row = await db.pool.fetchrow(
        "SELECT from_status, to_status, actor, reason FROM lifecycle.audit_trail WHERE subscription_id = $1 "
        "AND command = 'approve'",
        sub,
    )
    assert (row["from_status"], row["to_status"], row["actor"], row["reason"]) == (
        "pending_approval",
        "active",
        "user:alice",
        "checked",
    )


async def test_audit_trail_refuses_updates_and_deletes(settings: Settings, db: Database) -> None:
    import asyncpg

    await db.pool.execute(
        "INSERT INTO lifecycle.audit_trail (subscription_id, to_status, command, actor, channel, effective_at) "
        "VALUES ('x', 'active', 'create', 'test', 'direct', now())"
    )
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.pool.execute(
            "UPDATE lifecycle.audit_trail SET reason = 'edited' WHERE subscription_id = 'x'"
        )
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.pool.execute("DELETE FROM lifecycle.audit_trail WHERE subscription_id = 'x'")
