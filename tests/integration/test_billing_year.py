"""One year of a subscription under a test clock, billed by the real workers, checked by hand.

A direct order (intake) on a test clock; lifecycle commands as an operator sends them; the
test answers one payment request like a payment provider. Every figure below is worked out
in the comments, from the catalog prices (starter 19.00, pro 49.00 USD a month) and the
proration rule: round_half_up(full period amount x days left / days in the period).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.billing import metrics
from shared.contracts import events as ev
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from shared.timekeeping import advance_clock, create_clock
from som.orders import direct_order, subscription_id_of
from tests.integration.helpers import TopicReader, publish, running_workers
from tests.integration.test_billing_dunning import command, eventually, fast, pay, status_is

# A year of business time through all four workers, stopping at every timer.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

D = Decimal


def _noon(y: int, m: int, d: int, h: int = 12) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


async def _request(reader: TopicReader, number: str, attempt: int) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        await reader.poll(0.1)
        return next(
            (
                v
                for v in reader.values()
                if v["data"]["document_number"] == number and v["data"]["attempt"] == attempt
            ),
            None,
        )

    return await eventually(probe, what=f"payment request {attempt} of {number}")  # type: ignore[no-any-return]


async def _invoice_of(db: Database, sub: str, issued: date) -> str:
    async def probe() -> str | None:
        return await db.pool.fetchval(  # type: ignore[no-any-return]
            "SELECT document_number FROM billing.documents WHERE subscription_id = $1 AND issue_date = $2 "
            "AND document_type = 'invoice'",
            sub,
            issued,
        )

    return await eventually(probe, what=f"the invoice of {issued}")  # type: ignore[no-any-return]


async def test_one_year_with_upgrade_downgrade_pause_failed_payment_and_cancellation(
    settings: Settings, db: Database
) -> None:
    settings = fast(settings)
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    clock = f"{ns}year"
    start = datetime(2025, 1, 1, 10, tzinfo=UTC)
    await create_clock(db.pool, clock, start)
    order = direct_order(plan="starter", quantity=2, effective_at=start)  # region only: no country, no tax
    sub = subscription_id_of(order)
    renewals_failed = metrics.RENEWALS.labels("failed")._value.get()
    renewals_ok = metrics.RENEWALS.labels("succeeded")._value.get()

    async def advance(to: datetime) -> None:
        await advance_clock(db.pool, bootstrap, ns, clock, to, services=("lifecycle", "billing"))

    async with (
        running_workers(settings, db, names=("intake", "lifecycle", "billing")),
        TopicReader(bootstrap, f"{ns}{topics.BILLING_INVOICES}") as documents,
        TopicReader(bootstrap, f"{ns}{topics.PAYMENTS_REQUESTS}") as requests,
    ):
        await publish(
            settings,
            topics.inbound("direct"),
            order,
            key=order["order_id"],
            headers={"som-test-clock": clock},
        )
        await status_is(db, sub, "active")
        # Jan 1: starter x 2 = 38.00 for [Jan 1, Feb 1); Feb 1 and Mar 1 renew at 38.00.
        await advance(_noon(2025, 3, 11))
        # Mar 11 upgrade to pro (immediate). March [Mar 1, Apr 1) has 31 days, 21 left:
        #   credit 38.00 x 21/31 = 25.7419 -> -25.74; charge 98.00 x 21/31 = 66.3871 -> +66.39 (pending)
        await command(settings, "change_plan", sub, at=_noon(2025, 3, 11), plan_id="pro")
        # Apr 1: -25.74 + 66.39 + 98.00 = 138.65. May 1: 98.00, whose first attempt fails.
        await advance(datetime(2025, 5, 1, tzinfo=UTC))
        may = await _invoice_of(db, sub, date(2025, 5, 1))
        await pay(settings, await _request(requests, may, 1), "failed", "card_declined")
        await status_is(db, sub, "past_due")
        await advance(datetime(2025, 5, 2, tzinfo=UTC))  # dunning: retry 1 day after the failure
        await pay(settings, await _request(requests, may, 2), "succeeded")
        await status_is(db, sub, "active")
        # Jun 1: 98.00. Jun 10 downgrade to starter: at the period end (Jul 1), nothing now.
        await advance(_noon(2025, 6, 10))
        await command(settings, "change_plan", sub, at=_noon(2025, 6, 10), plan_id="starter")
        # Jul 1 and Aug 1: starter x 2 = 38.00. Aug 16 pause: August has 31 days, 16 unused:
        #   credit 38.00 x 16/31 = 19.6129 -> credit note -19.61 at once, kept as account credit (the
        #   balance shows it while paused). Sep 1, Oct 1: paused, nothing billed.
        await advance(_noon(2025, 8, 16))
        await command(settings, "pause", sub, at=_noon(2025, 8, 16))
        await status_is(db, sub, "paused")
        # Oct 11 resume: October [Oct 1, Nov 1) 31 days, 21 left: 38.00 x 21/31 = 25.7419 -> 25.74,
        #   invoiced at once and paid from the account credit: 25.74 - 19.61 = 6.13 due.
        await advance(_noon(2025, 10, 11))
        await command(settings, "resume", sub, at=_noon(2025, 10, 11))
        await status_is(db, sub, "active")
        # Nov 1, Dec 1: 38.00. Dec 16 immediate cancellation: December 31 days, 16 unused:
        #   38.00 x 16/31 = 19.6129 -> credit note -19.61, kept as account credit.
        await advance(_noon(2025, 12, 16))
        await command(settings, "cancel", sub, at=_noon(2025, 12, 16), timing="immediate")
        await status_is(db, sub, "cancelled")
        await advance(datetime(2026, 1, 1, tzinfo=UTC))  # the December close posts its recognition
        await documents.settle(0.5)

    docs = [v["data"] for v in documents.values() if v["subject"] == sub]
    invoices = [(d["issue_date"], D(d["total"])) for d in docs if d["document_type"] == "invoice"]
    assert invoices == [
        ("2025-01-01", D("38.00")),
        ("2025-02-01", D("38.00")),
        ("2025-03-01", D("38.00")),
        ("2025-04-01", D("138.65")),
        ("2025-05-01", D("98.00")),
        ("2025-06-01", D("98.00")),
        ("2025-07-01", D("38.00")),
        ("2025-08-01", D("38.00")),
        ("2025-10-11", D("25.74")),
        ("2025-11-01", D("38.00")),
        ("2025-12-01", D("38.00")),
    ]
    # 3 x 38.00 + 138.65 + 2 x 98.00 + 2 x 38.00 + 25.74 + 2 x 38.00 = 626.39
    assert sum(t for _, t in invoices) == D("626.39")
    april = next(d for d in docs if d["issue_date"] == "2025-04-01")
    assert [(ln["kind"], D(ln["amount"])) for ln in april["lines"]] == [
        ("proration_credit", D("-25.74")),
        ("proration_charge", D("66.39")),
        ("recurring", D("98.00")),
    ]
    resume = next(d for d in docs if d["issue_date"] == "2025-10-11")
    assert [D(ln["amount"]) for ln in resume["lines"]] == [D("25.74")]
    assert (D(resume["credits_applied"]), D(resume["amount_due"])) == (D("19.61"), D("6.13"))
    credit_notes = [(d["issue_date"], D(d["total"])) for d in docs if d["document_type"] == "credit_note"]
    assert credit_notes == [("2025-08-16", D("-19.61")), ("2025-12-16", D("-19.61"))]
    assert all(D(d["tax"]) == 0 for d in docs)
    # Gapless numbering: this subscription's invoices are consecutive in the INV series.
    numbers = [int(d["document_number"].split("-")[1]) for d in docs if d["document_type"] == "invoice"]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    types = {v["type"] for v in documents.values()}
    assert types == {ev.INVOICE_ISSUED, ev.CREDIT_NOTE_ISSUED}

    # The failed-then-recovered payment.
    may_doc = await db.pool.fetchrow(
        "SELECT status, attempts FROM billing.documents WHERE document_number = $1", may
    )
    assert (may_doc["status"], may_doc["attempts"]) == ("paid", 2)
    audit = [
        r["command"]
        for r in await db.pool.fetch(
            "SELECT command FROM lifecycle.audit_trail WHERE subscription_id = $1 ORDER BY id", sub
        )
    ]
    assert audit.count("mark_past_due") == 1 and audit.count("payment_recovered") == 1
    assert metrics.RENEWALS.labels("failed")._value.get() - renewals_failed == 1
    assert metrics.RENEWALS.labels("succeeded")._value.get() - renewals_ok == 1

    # The journal: every entry balances; the books add up to the documents.
    # Read once the year is over, by a fresh reader: a reader started before the first entry was
    # seen stalling at offset 1 on the embedded broker (Tansu) while 30 entries stood in the
    # partition (once in about four runs since the issue-date entry leaves with its invoice).
    async with TopicReader(bootstrap, f"{ns}{topics.ACCOUNTING_JOURNAL}") as journal:
        await journal.settle(1.0)
    entries = [v["data"] for v in journal.values() if v["data"]["subscription_id"] == sub]
    for e in entries:
        assert D(e["total_debit"]) == D(e["total_credit"]) == sum(D(ln["debit"]) for ln in e["lines"])
    net: dict[str, Decimal] = defaultdict(Decimal)  # debit - credit per account
    for e in entries:
        for ln in e["lines"]:
            net[ln["account"]] += D(ln["debit"]) - D(ln["credit"])
    # Receivables: invoices 626.39 - credit notes 39.22 + credit notes kept as account credit 39.22
    # - account credit applied to the resume invoice 19.61.
    assert net["accounts_receivable"] == D("606.78")
    assert net["customer_credit"] == D("-19.61")
    # Revenue: 626.39 - 39.22 = 587.17, all recognised: every service period ended by Jan 1, 2026.
    assert net["revenue"] == D("-587.17")
    assert net["deferred_revenue"] == 0
    assert net["tax_payable"] == 0
    recognised: dict[str, Decimal] = defaultdict(Decimal)
    for e in entries:
        if e["kind"] == "recognition":
            recognised[e["entry_date"][:7]] += sum(
                D(ln["credit"]) - D(ln["debit"]) for ln in e["lines"] if ln["account"] == "revenue"
            )
    assert dict(recognised) == {
        "2025-01": D("38.00"),
        "2025-02": D("38.00"),
        "2025-03": D(
            "78.65"
        ),  # 38.00 + (66.39 - 25.74) for [Mar 11, Apr 1), posted when April's invoice issued
        "2025-04": D("98.00"),
        "2025-05": D("98.00"),
        "2025-06": D("98.00"),
        "2025-07": D("38.00"),
        "2025-08": D("18.39"),  # 38.00 - 19.61 paused from Aug 16
        "2025-10": D("25.74"),  # resumed Oct 11; September: nothing (paused)
        "2025-11": D("38.00"),
        "2025-12": D("18.39"),  # 38.00 - 19.61 credited from Dec 16
    }
    assert sum(recognised.values()) == D("587.17")
