"""``som intake batch`` end to end: a partner CSV file through the real intake worker.

The summary the command prints must match what arrived on the topics: one command on
``subscriptions.commands`` per accepted row, one ``OrderRejected`` per row refused by the worker,
and the rows refused locally (unparseable rows) with their reasons.

Row count: ``SOM_TEST_BATCH_ROWS`` (default 10,000: about 45-50 s on the embedded broker and
database under the test session's tracing; set it lower for a quick run).
"""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections import Counter

import pytest

from services.intake.batch_runner import run_batch
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from tests.integration.helpers import TopicReader, running_workers

pytestmark = pytest.mark.integration

ROWS = int(os.environ.get("SOM_TEST_BATCH_ROWS", "10000"))
HEADER = [
    "order_id",
    "customer_id",
    "customer_email",
    "customer_region",
    "plan",
    "quantity",
    "billing_interval",
    "currency",
    "effective_at",
    "trial",
]


def make_batch(
    rows: int, prefix: str, effective_at: str = "2025-03-01T10:00:00Z"
) -> tuple[bytes, Counter[str]]:
    """A partner file of ``rows`` rows (header excluded) and the outcome each row should get.

    Most rows are good orders; every fiftieth-ish row breaks one rule the worker checks, and a
    few cannot even be parsed here. One order id is repeated (the repeat is refused locally).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    expected: Counter[str] = Counter()
    for i in range(rows):
        oid, cid = f"{prefix}-{i:06d}", f"c-{prefix}-{i % 997}"
        row = [
            oid,
            cid,
            f"{cid}@partner-client.example",
            ("eu", "us", "apac")[i % 3],
            "pro",
            str(1 + i % 7),
            "P1M",
            "USD",
            effective_at,
            "",
        ]
        kind = i % 100
        if kind in (7, 57):
            row[4], outcome = "platinum", "UNKNOWN_PLAN"
        elif kind in (17, 67):
            row[4], row[5], outcome = "starter", "25", "QUANTITY_OUT_OF_BOUNDS"
        elif kind == 27:
            row[3], row[4], row[5], outcome = "apac", "enterprise", "12", "REGION_UNAVAILABLE"
        elif kind == 37:
            row[4], row[7], outcome = "starter", "GBP", "CURRENCY_NOT_PRICED"
        elif kind == 47:
            row[1], outcome = "", "MISSING_FIELD"  # refused here: no customer
        elif kind == 97:
            row[5], outcome = "three", "INVALID_TYPE"  # refused here: not a number
        elif kind == 77 and i > 0:
            row[0], outcome = f"{prefix}-{i - 1:06d}", "DUPLICATE_ORDER"  # the previous row's order id again
        else:
            row[9], outcome = ("true" if i % 11 == 0 else ""), "accepted"
        writer.writerow(row)
        expected[outcome] += 1
    return out.getvalue().encode(), expected


@pytest.mark.slow  # ten thousand rows through the intake worker
async def test_batch_summary_matches_what_arrived_on_the_topics(settings: Settings, db: Database) -> None:
    prefix = uuid.uuid4().hex[:8]
    data, expected = make_batch(ROWS, prefix)
    local = {"MISSING_FIELD", "INVALID_TYPE", "DUPLICATE_ORDER"}
    bootstrap = str(settings.kafka_bootstrap)
    async with running_workers(settings, db, names=("intake",)):
        async with (
            TopicReader(bootstrap, f"{settings.topic_namespace}{topics.SUBSCRIPTIONS_COMMANDS}") as cmds,
            TopicReader(bootstrap, f"{settings.topic_namespace}{topics.ORDERS_REJECTED}") as rejected,
        ):
            # No time limit here: speed is a figure (`som intake batch` prints rows per second),
            # not a pass/fail condition; the default wait scales with the row count.
            summary = await run_batch(settings, data, file_name="partner.csv")
            await cmds.wait_for(summary.accepted, timeout=10)
            await rejected.wait_for(summary.rejected - summary.rejected_locally, timeout=10)
            await cmds.settle(0.5)
    print(f"\nbatch of {ROWS} rows: {summary.rows_per_second} rows/s")
    assert summary.no_outcome == 0
    assert summary.rows == ROWS
    assert summary.accepted == expected["accepted"]
    assert summary.rejected == ROWS - expected["accepted"]
    assert summary.rejected_locally == sum(expected[c] for c in local)
    assert summary.published == ROWS - summary.rejected_locally
    assert summary.by_reason == {code: n for code, n in expected.items() if code != "accepted"}

    # What the topics say, counted independently of the command's bookkeeping.
    ours = [v for v in cmds.values() if v["data"]["idempotency_key"].startswith(f"direct:{prefix}-")]
    assert len(ours) == summary.accepted == len({v["data"]["idempotency_key"] for v in ours})
    assert all(v["data"]["params"]["command"] == "create" for v in ours)
    refusals = [v["data"] for v in rejected.values() if str(v["data"]["channel_event_id"]).startswith(prefix)]
    assert len(refusals) == summary.rejected - summary.rejected_locally
    on_topic = Counter(r["code"] for d in refusals for r in d["reasons"])
    assert dict(on_topic) == {c: n for c, n in summary.by_reason.items() if c not in local}
    # Every rejected row of the summary names its reasons; local ones say so.
    assert all(o.reasons for o in summary.outcomes if o.outcome == "rejected")
    assert {o.where for o in summary.outcomes if o.outcome == "rejected"} == {"local", "topic"}


async def test_batch_sent_twice_counts_the_earlier_orders_as_accepted(
    settings: Settings, db: Database
) -> None:
    prefix = uuid.uuid4().hex[:8]
    data, expected = make_batch(120, prefix)
    async with running_workers(settings, db, names=("intake",)):
        first = await run_batch(settings, data, timeout=30)
        again = await run_batch(settings, data, timeout=3)  # nothing new arrives: the database knows them
    assert first.accepted == again.accepted == expected["accepted"]
    assert again.accepted_before == expected["accepted"]
    assert again.published == 0, "rows decided before are not sent again"
    assert again.rejected_before == first.rejected - first.rejected_locally
    assert again.rejected == first.rejected and again.by_reason == first.by_reason
    assert again.no_outcome == 0
