"""The customer credit ledger: one customer's balance across subscriptions (issue 11, item 5).

Real lifecycle and billing workers, real broker and database, a test clock. A credit note of one
subscription becomes the customer's credit at once; the next invoice of another subscription of
the same customer consumes it; ``som billing balance`` shows the movements. Refunds are payment
requests with a cash journal entry.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.billing import views
from shared.contracts import events as ev
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from shared.timekeeping import advance_clock, create_clock
from som.runner import child_env
from tests.integration.helpers import TopicReader, running_workers
from tests.integration.test_billing_dunning import command, eventually, fast

pytestmark = pytest.mark.integration

D = Decimal
WORKERS = ("lifecycle", "billing")


async def _balance(db: Database, customer_id: str) -> dict[str, Any] | None:
    rows = await views.customer_balance(db.pool, customer_id)
    return rows[0] if rows else None


async def test_a_credit_note_of_one_subscription_pays_the_next_invoice_of_another(
    settings: Settings, db: Database
) -> None:
    settings = fast(settings)
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    start = datetime(2025, 3, 1, 9, tzinfo=UTC)
    clock = f"{ns}ledger"
    await create_clock(db.pool, clock, start)
    customer = ev.Customer(customer_id=f"cus-{uuid.uuid4().hex[:8]}")
    a, b = f"sub-a-{uuid.uuid4().hex[:8]}", f"sub-b-{uuid.uuid4().hex[:8]}"

    async with (
        running_workers(settings, db, names=WORKERS),
        TopicReader(bootstrap, f"{ns}{topics.PAYMENTS_REQUESTS}") as requests,
    ):
        await command(
            settings, "create", a, at=start, clock=clock, plan_id="pro", quantity=1, customer=customer
        )
        await command(
            settings, "create", b, at=start, clock=clock, plan_id="starter", quantity=1, customer=customer
        )

        async def both_invoiced() -> bool:
            n = await db.pool.fetchval(
                "SELECT count(*) FROM billing.documents WHERE subscription_id = ANY($1::text[])", [a, b]
            )
            return bool(n == 2)

        await eventually(both_invoiced, what="both first invoices")
        # A cancelled at once on Mar 16: March has 31 days, 16 unused: 16/31 x 49.00 = 25.290 -> 25.29.
        await command(settings, "cancel", a, at=datetime(2025, 3, 16, 12, tzinfo=UTC), timing="immediate")

        async def credited() -> dict[str, Any] | None:
            bal = await _balance(db, customer.customer_id)
            return bal if bal and bal["balance"] == D("25.29") else None

        bal = await eventually(credited, what="the credit on the customer's balance")
        assert [(m["kind"], m["amount"]) for m in bal["movements"]] == [("credit_note", D("25.29"))]

        # B renews on Apr 1 (19.00): paid from the customer's credit, 6.29 left.
        await advance_clock(
            db.pool, bootstrap, ns, clock, datetime(2025, 4, 1, 9, tzinfo=UTC), services=WORKERS
        )

        async def consumed() -> dict[str, Any] | None:
            bal = await _balance(db, customer.customer_id)
            return bal if bal and bal["balance"] == D("6.29") else None

        bal = await eventually(consumed, what="the renewal to consume the credit")
        moves = [(m["kind"], m["amount"], m["balance_after"], m["subscription_id"]) for m in bal["movements"]]
        assert moves == [
            ("credit_note", D("25.29"), D("25.29"), a),
            ("applied", D("-19.00"), D("6.29"), b),
        ]
        renewal = await db.pool.fetchrow(
            "SELECT total, amount_due, status FROM billing.documents WHERE subscription_id = $1 "
            "AND reason = 'renewal'",
            b,
        )
        assert (renewal["total"], renewal["amount_due"], renewal["status"]) == (D("19.00"), D("0.00"), "paid")
        await requests.poll(0.1)
        assert not [v for v in requests.values() if v["data"]["reason"] == "refund"]

    shown = subprocess.run(
        [sys.executable, "-m", "som", "billing", "balance", customer.customer_id, "--json"],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert '"balance": "6.29"' in shown.stdout and '"applied"' in shown.stdout
