"""``som billing export`` on the embedded path: documents made by the real workers, exported as csv and
jsonl through the CLI, with totals that equal the database's documents and the posted journal."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from shared.contracts import events as ev
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from shared.timekeeping import advance_clock, create_clock
from tests.integration.helpers import running_workers
from tests.integration.test_billing_dunning import command, eventually, fast, status_is
from tests.integration.test_billing_preview import som

pytestmark = pytest.mark.integration

D = Decimal


async def test_export_ties_to_the_journal_and_the_database(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    settings = fast(settings)
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    clock = f"{ns}export"
    start = datetime(2025, 3, 1, 9, tzinfo=UTC)
    await create_clock(db.pool, clock, start)
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    customer = ev.Customer(
        customer_id=f"cus-de-{uuid.uuid4().hex[:8]}", country="DE", email="kunde@customer.example"
    )
    workers = ("lifecycle", "billing")

    async def documents(n: int) -> bool:
        count = await db.pool.fetchval(
            "SELECT count(*) FROM billing.documents WHERE subscription_id = $1", sub
        )
        return bool(count == n)

    async with running_workers(settings, db, names=workers):
        # An invoice, an upgrade invoiced at once, an immediate cancellation with a credit note and
        # account credit: issue, account-credit and (after the month end) recognition entries.
        await command(
            settings, "create", sub, at=start, clock=clock, plan_id="starter", quantity=1, customer=customer
        )
        await eventually(lambda: documents(1), what="first invoice")
        await advance_clock(
            db.pool, bootstrap, ns, clock, datetime(2025, 3, 11, 12, tzinfo=UTC), services=workers
        )
        await command(
            settings,
            "change_plan",
            sub,
            at=datetime(2025, 3, 11, 12, tzinfo=UTC),
            plan_id="enterprise",
            quantity=10,
        )
        await eventually(lambda: documents(2), what="upgrade invoice")
        await advance_clock(
            db.pool, bootstrap, ns, clock, datetime(2025, 3, 21, 12, tzinfo=UTC), services=workers
        )
        await command(settings, "cancel", sub, at=datetime(2025, 3, 21, 12, tzinfo=UTC), timing="immediate")
        await status_is(db, sub, "cancelled")
        await eventually(lambda: documents(3), what="credit note")
        # Past the month end: March's recognition entry is posted too; waits until quiet.
        await advance_clock(
            db.pool, bootstrap, ns, clock, datetime(2025, 4, 2, 12, tzinfo=UTC), services=workers
        )

    in_db = await db.pool.fetch(
        "SELECT document_type, total, coalesce((body->>'test')::boolean, false) AS test FROM billing.documents "
        "WHERE subscription_id = $1",
        sub,
    )
    posted = await db.pool.fetch(
        "SELECT payload FROM timekeeping.timers WHERE service = $1 AND topic = $2 AND subscription_id = $3 "
        "AND fired_at IS NOT NULL AND (payload->>'entry_date')::date BETWEEN '2025-03-01' AND '2025-03-31'",
        f"{ns}billing",
        topics.ACCOUNTING_JOURNAL,
        sub,
    )
    entries = [json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"] for r in posted]
    assert sorted(r["document_type"] for r in in_db) == ["credit_note", "invoice", "invoice"]
    assert {e["kind"] for e in entries} >= {"issue", "recognition"}
    db_total = sum((r["total"] for r in in_db), D(0))
    journal_debit = sum((D(line["debit"]) for e in entries for line in e["lines"]), D(0))

    common = (
        "billing",
        "export",
        "--from",
        "2025-03-01",
        "--to",
        "2025-03-31",
        "--subscription",
        sub,
        "--include-test",
    )
    out_jsonl, out_csv = tmp_path / "export.jsonl", tmp_path / "export.csv"
    done = await som(settings, *common, "--format", "jsonl", "--output", str(out_jsonl))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    (totals,) = [r for r in rows if r["record_type"] == "totals"]
    assert totals["currency"] == "USD" and totals["ties"] is True
    assert (totals["invoices"], totals["credit_notes"]) == (2, 1)
    assert D(totals["documents_total"]) == db_total == D(totals["receivables_issued"])
    assert D(totals["journal_debit"]) == D(totals["journal_credit"]) == journal_debit
    assert totals["journal_entries"] == len(entries)
    # Amounts are exact decimal strings with the currency's two digits.
    for r in rows:
        for key in ("total", "subtotal", "tax", "amount_due", "debit", "credit"):
            if key in r:
                assert isinstance(r[key], str) and len(r[key].split(".")[1]) == 2, (key, r[key])

    done = await som(settings, *common, "--format", "csv", "--output", str(out_csv))
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    docs = [r for r in table if r["record_type"] in ("invoice", "credit_note")]
    lines = [r for r in table if r["record_type"] == "journal_line"]
    assert sum((D(r["total"]) for r in docs), D(0)) == db_total
    assert (
        sum((D(r["debit"]) for r in lines), D(0))
        == sum((D(r["credit"]) for r in lines), D(0))
        == journal_debit
    )
    issued_ar = sum(
        (
            D(r["debit"]) - D(r["credit"])
            for r in lines
            if r["entry_kind"] == "issue" and r["account"] == "accounts_receivable"
        ),
        D(0),
    )
    assert issued_ar == db_total

    # Without --include-test, test-clock data stays out; a reversed range is a usage error.
    plain = await som(
        settings, "billing", "export", "--from", "2025-03-01", "--to", "2025-03-31", "--subscription", sub
    )
    assert plain.returncode == 0, plain.stderr
    exported = [r for r in csv.DictReader(io.StringIO(plain.stdout)) if r["record_type"] != "journal_line"]
    assert len(exported) == sum(1 for r in in_db if not r["test"])
    reversed_range = await som(settings, "billing", "export", "--from", "2025-03-31", "--to", "2025-03-01")
    assert reversed_range.returncode == 2
