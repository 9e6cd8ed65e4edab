"""``som billing preview`` shows what the worker then issues for the same change on the same date.

A German customer (19 % VAT) paying in USD on a test clock. The preview runs as the CLI
(a subprocess, ``--json``); the change then goes to the lifecycle for real and the invoice
or credit note billing publishes must be the preview, number aside.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.contracts import events as ev
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from shared.timekeeping import advance_clock, create_clock
from som.runner import child_env
from tests.integration.helpers import TopicReader, running_workers
from tests.integration.test_billing_dunning import command, eventually, fast, status_is

pytestmark = pytest.mark.integration

D = Decimal
COMPARED = (
    "document_type",
    "issue_date",
    "due_date",
    "currency",
    "lines",
    "subtotal",
    "tax",
    "total",
    "credits_applied",
    "amount_due",
    "customer",
    "subscription_id",
)


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


async def preview(settings: Settings, sub: str, *args: str) -> dict[str, Any]:
    done = await som(settings, "billing", "preview", sub, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


async def published(reader: TopicReader, sub: str, issue_date: str, document_type: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        await reader.poll(0.1)
        return next(
            (
                v["data"]
                for v in reader.values()
                if v["subject"] == sub
                and v["data"]["issue_date"] == issue_date
                and v["data"]["document_type"] == document_type
            ),
            None,
        )

    return await eventually(probe, what=f"{document_type} of {issue_date}")  # type: ignore[no-any-return]


async def test_preview_equals_what_the_worker_issues_for_the_same_change_and_date(
    settings: Settings, db: Database
) -> None:
    settings = fast(settings)
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    clock = f"{ns}preview"
    start = datetime(2025, 3, 1, 9, tzinfo=UTC)
    await create_clock(db.pool, clock, start)
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    customer = ev.Customer(
        customer_id=f"cus-de-{uuid.uuid4().hex[:8]}", country="DE", email="kunde@customer.example"
    )
    workers = ("lifecycle", "billing")
    async with (
        running_workers(settings, db, names=workers),
        TopicReader(bootstrap, f"{ns}{topics.BILLING_INVOICES}") as invoices,
    ):
        await command(
            settings, "create", sub, at=start, clock=clock, plan_id="starter", quantity=1, customer=customer
        )
        first = await published(invoices, sub, "2025-03-01", "invoice")
        assert (D(first["subtotal"]), D(first["tax"]), D(first["total"])) == (
            D("19.00"),
            D("3.61"),
            D("22.61"),
        )

        await advance_clock(
            db.pool, bootstrap, ns, clock, datetime(2025, 3, 11, 12, tzinfo=UTC), services=workers
        )
        state_before = await db.pool.fetchval(
            "SELECT state FROM billing.subscriptions WHERE subscription_id = $1", sub
        )
        # starter -> enterprise x 10 is invoiced at once (billing policy pair rule). March has 31 days, 21 left:
        #   credit 19.00 x 21/31 = 12.8710 -> -12.87, VAT -2.4453 -> -2.45
        #   charge 990.00 x 21/31 = 670.6452 -> 670.65, VAT 127.4235 -> 127.42
        #   subtotal 657.78, tax 124.97, total 782.75
        upgrade = await preview(
            settings,
            sub,
            "--change",
            "change_plan",
            "--plan",
            "enterprise",
            "--quantity",
            "10",
            "--on",
            "2025-03-11",
        )
        assert len(upgrade["documents"]) == 1
        expected = upgrade["documents"][0]
        assert (D(expected["subtotal"]), D(expected["tax"]), D(expected["total"])) == (
            D("657.78"),
            D("124.97"),
            D("782.75"),
        )
        # Nothing changed: no document, same state.
        assert (
            await db.pool.fetchval("SELECT count(*) FROM billing.documents WHERE subscription_id = $1", sub)
            == 1
        )
        assert (
            await db.pool.fetchval("SELECT state FROM billing.subscriptions WHERE subscription_id = $1", sub)
            == state_before
        )

        await command(
            settings,
            "change_plan",
            sub,
            at=datetime(2025, 3, 11, 12, tzinfo=UTC),
            plan_id="enterprise",
            quantity=10,
        )
        actual = await published(invoices, sub, "2025-03-11", "invoice")
        assert {k: actual[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}

        await advance_clock(
            db.pool, bootstrap, ns, clock, datetime(2025, 3, 21, 12, tzinfo=UTC), services=workers
        )
        # Immediate cancellation on Mar 21: the enterprise charge [Mar 11, Apr 1) is 21 days, 11 unused:
        #   670.65 x 11/21 = 351.2929 -> -351.29, VAT -66.7451 -> -66.75: credit note -418.04.
        #   (The starter line was credited from Mar 11 already: nothing more.)
        cancel = await preview(
            settings, sub, "--change", "cancel", "--timing", "immediate", "--on", "2025-03-21"
        )
        expected_cn = cancel["documents"][0]
        assert expected_cn["document_type"] == "credit_note" and D(expected_cn["total"]) == D("-418.04")
        assert D(cancel["account_credit_after"]) == D("418.04")
        await command(settings, "cancel", sub, at=datetime(2025, 3, 21, 12, tzinfo=UTC), timing="immediate")
        await status_is(db, sub, "cancelled")
        actual_cn = await published(invoices, sub, "2025-03-21", "credit_note")
        assert {k: actual_cn[k] for k in COMPARED} == {k: expected_cn[k] for k in COMPARED}
        credit = await db.pool.fetchval(
            "SELECT account_credit FROM billing.subscriptions WHERE subscription_id = $1", sub
        )
        assert credit == D("418.04")

    # The revenue schedule of the three documents: March nets to 19.00 - 12.87 + 670.65 - 351.29 = 325.49.
    done = await som(settings, "revenue", "schedule", sub, "--json")
    assert done.returncode == 0, done.stderr
    schedule = json.loads(done.stdout)
    assert schedule["months"] == [{"month_end": "2025-03-31", "amount": "325.49", "posted": False}]
    assert D(schedule["total"]) == D("325.49")
    listed = await som(settings, "billing", "documents", sub, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(d["document_type"], d["status"]) for d in json.loads(listed.stdout)] == [
        ("invoice", "open"),
        ("invoice", "open"),
        ("credit_note", "issued"),
    ]  # nobody answered the payments
    missing = await som(
        settings, "billing", "preview", "no-such-sub", "--change", "cancel", "--on", "2025-03-21"
    )
    assert missing.returncode == 3
    usage = await som(settings, "billing", "preview", sub, "--change", "change_plan", "--on", "2025-03-21")
    assert usage.returncode == 2  # change_plan needs --plan


async def test_preview_runs_the_renewals_due_before_its_date(settings: Settings, db: Database) -> None:
    """Issue 11 defect: a preview dated after a renewal left that renewal out (and prorated nothing)."""
    settings = fast(settings)
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    clock = f"{ns}preview-renewal"
    start = datetime(2025, 3, 1, 9, tzinfo=UTC)
    await create_clock(db.pool, clock, start)
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    customer = ev.Customer(customer_id=f"cus-de-{uuid.uuid4().hex[:8]}", country="DE")
    workers = ("lifecycle", "billing")
    async with (
        running_workers(settings, db, names=workers),
        TopicReader(bootstrap, f"{ns}{topics.BILLING_INVOICES}") as invoices,
    ):
        await command(
            settings, "create", sub, at=start, clock=clock, plan_id="starter", quantity=1, customer=customer
        )
        await published(invoices, sub, "2025-03-01", "invoice")
        # Still Mar 1 on the clock; a second seat on Apr 10. The Apr 1 renewal runs first:
        #   19.00 + VAT 3.61 = 22.61. Then April (30 days) has 21 days left from Apr 10:
        #   credit 19.00 x 21/30 = 13.30, charge 38.00 x 21/30 = 26.60 (pending by policy).
        shown = await preview(
            settings, sub, "--change", "change_quantity", "--quantity", "2", "--on", "2025-04-10"
        )
        assert [(d["issue_date"], D(d["total"])) for d in shown["documents"]] == [("2025-04-01", D("22.61"))]
        assert sorted(D(line["amount"]) for line in shown["pending_lines"]) == [D("-13.30"), D("26.60")]
        assert "renewal on 2025-04-01 runs first" in shown["notes"]

        await advance_clock(
            db.pool, bootstrap, ns, clock, datetime(2025, 4, 10, 12, tzinfo=UTC), services=workers
        )
        renewal = await published(invoices, sub, "2025-04-01", "invoice")
        expected = shown["documents"][0]
        assert {k: renewal[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
