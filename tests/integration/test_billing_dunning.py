"""Billing's payment flow under a test clock: dunning retries, suspension, recovery.

The test plays the payment provider: it reads ``payments.requests`` and answers on
``payments.results``. Real lifecycle and billing workers, real broker and database.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.billing import metrics
from shared.contracts import events as ev
from shared.contracts.commands import params_for
from shared.contracts.envelope import derived_id, make_event
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from shared.timekeeping import advance_clock, create_clock
from tests.integration.helpers import TopicReader, publish, running_workers

pytestmark = pytest.mark.integration

WORKERS = ("lifecycle", "billing")


def fast(settings: Settings) -> Settings:
    """The test's settings with a quick scheduler (timers fire within 0.1 s of falling due)."""
    return settings.model_copy(update={"scheduler_poll_seconds": 0.1})


async def eventually(
    probe: Callable[[], Awaitable[Any]], *, timeout: float = 15.0, what: str = "condition"
) -> Any:
    """Poll ``probe`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def command(
    settings: Settings,
    name: str,
    subscription_id: str,
    *,
    at: datetime,
    clock: str | None = None,
    plan_id: str | None = None,
    quantity: int | None = None,
    customer: ev.Customer | None = None,
    **fields: Any,
) -> None:
    """Publish a lifecycle command as intake or an operator would (``fields``: the command's own)."""
    if name == "create":
        fields.update(
            customer=customer or ev.Customer(customer_id=f"cus-{subscription_id}"),
            billing_interval="P1M",
            currency="USD",
            clock=clock,
        )
    fields.update({k: v for k, v in (("plan_id", plan_id), ("quantity", quantity)) if v is not None})
    cmd = ev.SubscriptionCommand(
        subscription_id=subscription_id,
        idempotency_key=f"test:{uuid.uuid4()}",
        channel="direct",
        effective_at=at,
        actor="user:test",
        params=params_for(name, **fields),
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


async def pay(settings: Settings, request: dict[str, Any], outcome: str, reason: str | None = None) -> None:
    """Answer a PaymentRequested CloudEvent like a payment provider."""
    data = request["data"]
    result = ev.PaymentResult(
        document_number=data["document_number"],
        subscription_id=data["subscription_id"],
        attempt=data["attempt"],
        outcome=outcome,  # type: ignore[arg-type]
        failure_reason=reason,
        payment_id=data["payment_id"],
        amount=Decimal(data["amount"]),
        currency=data["currency"],
    )
    event = make_event(
        type=ev.PAYMENT_RESULT,
        source="tests/psp",
        subject=data["subscription_id"],
        data=result,
        correlation_id=request["correlationid"],
        causation_id=request["id"],
        discriminator=outcome,
    )
    await publish(
        settings,
        topics.PAYMENTS_RESULTS,
        event.model_dump_json().encode(),
        key=data["subscription_id"],
        headers={"ce_id": event.id},
    )


async def method_updated(settings: Settings, subscription_id: str) -> None:
    """The customer enters a new card."""
    update = ev.PaymentMethodUpdated(subscription_id=subscription_id)
    corr = derived_id("pmu", subscription_id, str(uuid.uuid4()))
    event = make_event(
        type=ev.PAYMENT_METHOD_UPDATED,
        source="tests",
        subject=subscription_id,
        data=update,
        correlation_id=corr,
        causation_id=corr,
    )
    await publish(
        settings,
        topics.PAYMENTS_RESULTS,
        event.model_dump_json().encode(),
        key=subscription_id,
        headers={"ce_id": event.id},
    )


async def status_is(db: Database, subscription_id: str, want: str, timeout: float = 15.0) -> str:
    """Wait until the lifecycle shows ``want``."""

    async def probe() -> bool:
        got = await db.pool.fetchval(
            "SELECT status FROM lifecycle.subscriptions WHERE subscription_id = $1", subscription_id
        )
        return bool(got == want)

    await eventually(probe, timeout=timeout, what=f"{subscription_id} to be {want}")
    return want


async def request_for(
    reader: TopicReader, subscription_id: str, attempt: int, timeout: float = 15.0
) -> dict[str, Any]:
    """The PaymentRequested of ``attempt`` for the subscription (waits for it)."""

    async def probe() -> dict[str, Any] | None:
        await reader.poll(0.1)
        for v in reader.values():
            if v["subject"] == subscription_id and v["data"]["attempt"] == attempt:
                return v  # type: ignore[no-any-return]
        return None

    return await eventually(probe, timeout=timeout, what=f"payment request {attempt} of {subscription_id}")  # type: ignore[no-any-return]


async def first_document(db: Database, subscription_id: str) -> dict[str, Any]:
    async def probe() -> Any:
        return await db.pool.fetchrow(
            "SELECT document_number, total, amount_due, status, attempts FROM billing.documents "
            "WHERE subscription_id = $1 ORDER BY document_number LIMIT 1",
            subscription_id,
        )

    return dict(await eventually(probe, what=f"the first invoice of {subscription_id}"))


async def pending_retry(db: Database, number: str) -> datetime | None:
    """Due time of the invoice's pending payment timer."""
    return await db.pool.fetchval(  # type: ignore[no-any-return]
        "SELECT due_at FROM timekeeping.timers WHERE kind = $1 AND fired_at IS NULL AND cancelled_at IS NULL",
        f"payment:{number}",
    )


def _at(d: date, hour: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


async def test_dunning_retries_on_schedule_suspends_when_exhausted_and_a_new_card_retries_at_once(
    settings: Settings, db: Database
) -> None:
    settings = fast(settings)
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    start = datetime(2025, 3, 1, 9, tzinfo=UTC)
    clock = f"{ns}clock"
    await create_clock(db.pool, clock, start)
    a, b = f"sub-a-{uuid.uuid4().hex[:8]}", f"sub-b-{uuid.uuid4().hex[:8]}"
    failed_before = metrics.PAYMENT_RESULTS.labels("failed")._value.get()

    async def advance(to: datetime) -> None:
        await advance_clock(db.pool, bootstrap, ns, clock, to, services=WORKERS)

    async with (
        running_workers(settings, db, names=WORKERS),
        TopicReader(bootstrap, f"{ns}{topics.PAYMENTS_REQUESTS}") as requests,
    ):
        for sub in (a, b):
            await command(settings, "create", sub, at=start, clock=clock, plan_id="starter", quantity=1)
        inv_a, inv_b = await first_document(db, a), await first_document(db, b)
        assert inv_a["total"] == Decimal("19.00") and inv_a["status"] == "open"  # no country: no tax
        await advance(start)  # the first attempts are due today (net 0)

        # B: first failure -> past_due, retry tomorrow; a new card retries at once and pays.
        await pay(settings, await request_for(requests, b, 1), "failed", "card_declined")
        await status_is(db, b, "past_due")
        assert await pending_retry(db, inv_b["document_number"]) == _at(date(2025, 3, 2))
        await method_updated(settings, b)
        immediate = await request_for(requests, b, 2)
        assert immediate["data"]["reason"] == "payment_method_updated"
        assert immediate["time"].startswith("2025-03-01")  # not tomorrow: now, on the business clock
        assert await pending_retry(db, inv_b["document_number"]) is None  # the scheduled retry is cancelled
        await pay(settings, immediate, "succeeded")
        await status_is(db, b, "active")

        # A: fails on every attempt. Retries 1, 3 and 7 days after each failure (since_last_failure).
        await pay(settings, await request_for(requests, a, 1), "failed", "insufficient_funds")
        await status_is(db, a, "past_due")
        retry_days = [date(2025, 3, 2), date(2025, 3, 5), date(2025, 3, 12)]
        for attempt, day in enumerate(retry_days, start=2):
            assert await pending_retry(db, inv_a["document_number"]) == _at(day)
            await advance(_at(day))
            req = await request_for(requests, a, attempt)
            assert req["time"] == f"{day.isoformat()}T00:00:00Z"  # fired at the retry date on the test clock
            assert req["data"]["reason"] == "retry" and Decimal(req["data"]["amount"]) == Decimal("19.00")
            await pay(settings, req, "failed", "insufficient_funds")
            if attempt < 4:
                await eventually(
                    functools.partial(_attempts, db, inv_a["document_number"], attempt + 1),
                    what=f"retry {attempt + 1} scheduled",
                )
        await status_is(db, a, "suspended")  # the failure after the last retry exhausts the schedule
        assert await pending_retry(db, inv_a["document_number"]) is None

        # A new card after exhaustion: retried at once; paid -> reactivated.
        await advance(datetime(2025, 3, 13, 10, tzinfo=UTC))
        await method_updated(settings, a)
        fifth = await request_for(requests, a, 5)
        assert fifth["time"].startswith("2025-03-13T10:00")
        await pay(settings, fifth, "succeeded")
        await status_is(db, a, "active")

    doc_a = await db.pool.fetchrow(
        "SELECT status, attempts, paid_on, dunning FROM billing.documents WHERE document_number = $1",
        inv_a["document_number"],
    )
    assert doc_a["status"] == "paid" and doc_a["attempts"] == 5 and doc_a["paid_on"] == date(2025, 3, 13)
    assert doc_a["dunning"] is None
    attempts = await db.pool.fetch(
        "SELECT attempt, outcome, business_date FROM billing.payment_attempts "
        "WHERE document_number = $1 ORDER BY attempt",
        inv_a["document_number"],
    )
    assert [(r["attempt"], r["outcome"], r["business_date"]) for r in attempts] == [
        (1, "failed", date(2025, 3, 1)),
        (2, "failed", date(2025, 3, 2)),
        (3, "failed", date(2025, 3, 5)),
        (4, "failed", date(2025, 3, 12)),
        (5, "succeeded", date(2025, 3, 13)),
    ]
    audit = await db.pool.fetch(
        "SELECT command, to_status, actor FROM lifecycle.audit_trail WHERE subscription_id = $1 ORDER BY id",
        a,
    )
    assert [(r["command"], r["to_status"]) for r in audit] == [
        ("create", "active"),
        ("mark_past_due", "past_due"),
        ("suspend", "suspended"),
        ("reactivate", "active"),
    ]
    assert {r["actor"] for r in audit[1:]} == {"system:billing"}
    audit_b = await db.pool.fetch(
        "SELECT command FROM lifecycle.audit_trail WHERE subscription_id = $1 ORDER BY id", b
    )
    assert [r["command"] for r in audit_b] == ["create", "mark_past_due", "payment_recovered"]
    assert metrics.PAYMENT_RESULTS.labels("failed")._value.get() - failed_before == 5


async def _attempts(db: Database, number: str, want: int) -> bool:
    got = await db.pool.fetchval("SELECT attempts FROM billing.documents WHERE document_number = $1", number)
    return bool(got == want)
