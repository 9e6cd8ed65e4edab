"""The STACKIT poller against a local stand-in of the vendor API, with the real workers.

The stand-in (stdlib ``http.server`` in a thread) serves ``GET /v1/vendors/projects/{p}/subscriptions``
with cursor paging and ``POST .../{id}/approve|reject``, checks the bearer token, and lets the
test move subscriptions through their lifecycle states the way STACKIT would.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from services.intake.stackit_poller import StackitPoller
from shared.catalog import cached_catalog
from shared.contracts.envelope import derived_id
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from shared.timekeeping import advance_clock, create_clock, wait_quiet
from tests.integration.helpers import TopicReader, running_workers

pytestmark = pytest.mark.integration

TOKEN = "stackit-test-token"
CHANNEL = "stackit_marketplace"


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeVendorApi:
    """A STACKIT Marketplace vendor API for one project, in memory."""

    def __init__(self, project_id: str, *, page_size_cap: int = 2) -> None:
        self.project_id = project_id
        self.page_size_cap = page_size_cap  # small pages, so the poller must follow cursors
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []  # (method, path)
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, sub: dict[str, Any]) -> None:
        with self.lock:
            self.subscriptions[sub["subscriptionId"]] = sub

    def update(self, subscription_id: str, **fields: Any) -> None:
        with self.lock:
            self.subscriptions[subscription_id].update(fields)

    def decisions(self) -> list[tuple[str, str]]:
        """(subscription id, approve|reject) in call order."""
        with self.lock:
            return [(p.split("/")[-2], p.split("/")[-1]) for m, p in self.calls if m == "POST"]

    @contextmanager
    def running(self) -> Iterator[FakeVendorApi]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _reply(self, status: int, doc: Any = None) -> None:
                body = json.dumps(doc if doc is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._reply(401, {"message": "unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:
                url = urlparse(self.path)
                base = f"/v1/vendors/projects/{api.project_id}/subscriptions"
                if not self._authorized():
                    return
                if url.path != base:
                    self._reply(404, {"message": "not found"})
                    return
                query = parse_qs(url.query)
                limit = min(int(query.get("limit", ["100"])[0]), api.page_size_cap)
                start = int(query.get("cursor", ["0"])[0])
                with api.lock:
                    api.calls.append(("GET", url.path))
                    items = [json.loads(json.dumps(s)) for s in api.subscriptions.values()]
                page = items[start : start + limit]
                doc: dict[str, Any] = {"items": page, "limit": limit}
                if start + limit < len(items):
                    doc["cursor"] = str(start + limit)
                self._reply(200, doc)

            def do_POST(self) -> None:
                if not self._authorized():
                    return
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                # v1 / vendors / projects / {p} / subscriptions / {id} / approve|reject
                if len(parts) != 7 or parts[3] != api.project_id or parts[6] not in ("approve", "reject"):
                    self._reply(404, {"message": "not found"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                sid, action = parts[5], parts[6]
                with api.lock:
                    api.calls.append(("POST", url.path))
                    sub = api.subscriptions.get(sid)
                    if sub is None:
                        status = 404
                    elif sub["lifecycleState"] != "SUBSCRIPTION_PENDING":
                        status = 409
                    else:
                        status = 200
                        if action == "approve":
                            now = datetime.now(UTC).replace(microsecond=0)
                            sub.update(
                                lifecycleState="SUBSCRIPTION_ACTIVE",
                                validFrom=_ts(now),
                                validUntil=_ts(now + timedelta(days=30)),
                            )
                        else:
                            sub.update(lifecycleState="SUBSCRIPTION_REJECTED")
                self._reply(status, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(5)


def subscription(
    *,
    organization: str,
    project: str,
    plan: str,
    product: str = "quarry-observability",
    subscription_id: str | None = None,
) -> dict[str, Any]:
    """A pending STACKIT subscription object in the vendor API's shape (see the samples)."""
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "approvalTimeout": "3600s",
        "autoRenewal": True,
        "lifecycleState": "SUBSCRIPTION_PENDING",
        "orderedAt": _ts(now - timedelta(minutes=5)),
        "organizationId": organization,
        "product": {
            "deliveryMethod": "SAAS",
            "lifecycleState": "PRODUCT_LIVE",
            "noticePeriod": "P1M",
            "planId": plan,
            "priceType": "CONTRACT",
            "pricingPlan": "Monthly subscription per seat",
            "productId": product,
            "productName": "Quarry Observability",
            "rate": "19.00",
            "validityPeriod": "P1M",
            "vendorName": "Quarry Systems GmbH",
        },
        "projectId": project,
        "subscriptionId": subscription_id or str(uuid.uuid4()),
    }


def stackit_settings(settings: Settings, api: FakeVendorApi, **extra: Any) -> Settings:
    return settings.model_copy(
        update={
            "stackit_base_url": api.base_url,
            "stackit_token": TOKEN,
            "stackit_project_id": api.project_id,
            "stackit_poll_seconds": 0.3,
            **extra,
        }
    )


async def _until(check: Any, timeout: float = 15.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


async def _subscription(db: Database, subscription_id: str) -> Any:
    return await db.pool.fetchrow(
        "SELECT status, plan_id FROM lifecycle.subscriptions WHERE subscription_id = $1", subscription_id
    )


async def test_worker_polls_in_background_and_approves_or_rejects_pending_subscriptions(
    settings: Settings, db: Database
) -> None:
    api = FakeVendorApi(str(uuid.uuid4()))
    org = str(uuid.uuid4())
    good = subscription(organization=org, project=str(uuid.uuid4()), plan="team-monthly")
    unknown = subscription(organization=org, project=str(uuid.uuid4()), plan="platinum-unicorn")
    extra = [
        subscription(organization=org, project=str(uuid.uuid4()), plan="starter-monthly") for _ in range(3)
    ]
    for sub in (good, unknown, *extra):
        api.add(sub)
    good_id = derived_id("subscription", CHANNEL, good["subscriptionId"])
    bootstrap = str(settings.kafka_bootstrap)
    with api.running():
        s = stackit_settings(settings, api)
        async with running_workers(s, db, names=("intake", "lifecycle")):
            async with TopicReader(
                bootstrap, f"{settings.topic_namespace}{topics.ORDERS_REJECTED}"
            ) as rejected:
                row = await _until(lambda: _subscription(db, good_id))
                await rejected.wait_for(1, timeout=10)
                # the approved ones become ACTIVE at the vendor; the poller publishes that too
                await _until(
                    lambda: db.pool.fetchval(
                        "SELECT count(*) = 4 FROM intake.orders WHERE channel = $1 AND action = 'activate' "
                        "AND canonical->>'channel_subscription_id' = ANY($2::text[])",
                        CHANNEL,
                        [good["subscriptionId"], *(e["subscriptionId"] for e in extra)],
                    )
                )
    assert row is not None and (row["status"], row["plan_id"]) == ("active", "pro")
    decisions = dict(api.decisions())
    assert decisions[good["subscriptionId"]] == "approve"
    assert decisions[unknown["subscriptionId"]] == "reject"
    assert all(decisions[e["subscriptionId"]] == "approve" for e in extra)
    assert len(api.decisions()) == 5, "each pending subscription is decided once"
    refused = rejected.values()[0]["data"]
    assert refused["channel_subscription_id"] == unknown["subscriptionId"]
    assert [r["code"] for r in refused["reasons"]] == ["UNKNOWN_PLAN"]
    stored = await db.pool.fetch(
        "SELECT subscription_id, decision, lifecycle_state FROM intake.stackit_snapshots "
        "WHERE namespace = $1 AND project_id = $2",
        settings.topic_namespace,
        api.project_id,
    )
    assert len(stored) == 5
    assert {r["subscription_id"]: r["decision"] for r in stored}[unknown["subscriptionId"]] == "rejected"


async def test_plan_change_with_a_new_stackit_id_keeps_one_subscription(
    settings: Settings, db: Database
) -> None:
    api = FakeVendorApi(str(uuid.uuid4()))
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    old = subscription(organization=org, project=project, plan="starter-monthly")
    api.add(old)
    internal = derived_id("subscription", CHANNEL, old["subscriptionId"])
    with api.running():
        s = stackit_settings(settings, api)
        poller = StackitPoller.from_settings(
            s, db, catalog=cached_catalog(None)
        )  # polled by hand, step by step
        try:
            async with running_workers(settings, db, names=("intake", "lifecycle")):
                first = await poller.poll_once()
                assert (first.published, first.approved) == (1, [old["subscriptionId"]])
                row = await _until(lambda: _subscription(db, internal))
                assert (row["status"], row["plan_id"]) == ("active", "starter")

                await poller.poll_once()  # the vendor now says ACTIVE
                # The customer cancels the old plan to the end of its term ...
                ends = api.subscriptions[old["subscriptionId"]]["validUntil"].replace("Z", "").split("T")[0]
                api.update(
                    old["subscriptionId"],
                    lifecycleState="SUBSCRIPTION_CANCELLING",
                    terminatesAt=f"{ends}T23:59:59Z",
                )
                await poller.poll_once()
                row = await _until(
                    lambda: db.pool.fetchrow(
                        "SELECT status, plan_id FROM lifecycle.subscriptions WHERE subscription_id = $1 "
                        "AND status = 'non_renewing'",
                        internal,
                    )
                )
                assert row is not None, "the cancellation to the end of term arrived"

                # ... and buys the new plan: a new STACKIT subscription id, same org/project/product.
                new = subscription(organization=org, project=project, plan="team-monthly")
                api.add(new)
                change = await poller.poll_once()
                assert change.published == 1 and change.approved == [new["subscriptionId"]]
                row = await _until(
                    lambda: db.pool.fetchrow(
                        "SELECT status, plan_id FROM lifecycle.subscriptions WHERE subscription_id = $1 "
                        "AND plan_id = 'pro' AND status = 'active'",
                        internal,
                    )
                )
                assert row is not None, "the plan change landed on the same subscription, which continues"

                # The old id ends at STACKIT; the subscription lives on under the new id.
                api.update(old["subscriptionId"], lifecycleState="SUBSCRIPTION_CANCELLED")
                last = await poller.poll_once()
                assert last.published == 2  # old CANCELLED, new ACTIVE
                await _until(
                    lambda: db.pool.fetchval(
                        "SELECT count(*) = 1 FROM intake.orders WHERE channel = $1 AND action = 'cancel' "
                        "AND canonical->>'phase' = 'effective' AND canonical->>'channel_subscription_id' = $2",
                        CHANNEL,
                        old["subscriptionId"],
                    )
                )
                await asyncio.sleep(1.0)  # a wrong cancel command would reach the lifecycle in this time
                final = await _subscription(db, internal)
        finally:
            await poller.client.aclose()
    assert (final["status"], final["plan_id"]) == ("active", "pro")
    both = [
        derived_id("subscription", CHANNEL, old["subscriptionId"]),
        derived_id("subscription", CHANNEL, new["subscriptionId"]),
    ]
    count = await db.pool.fetchval(
        "SELECT count(*) FROM lifecycle.subscriptions WHERE subscription_id = ANY($1::text[])", both
    )
    assert count == 1, "one subscription, not two"
    mapping = await db.pool.fetch(
        "SELECT channel_subscription_id, subscription_id, replaced_by FROM intake.channel_subscriptions "
        "WHERE channel = $1 AND channel_subscription_id = ANY($2::text[])",
        CHANNEL,
        [old["subscriptionId"], new["subscriptionId"]],
    )
    assert {r["channel_subscription_id"]: (r["subscription_id"], r["replaced_by"]) for r in mapping} == {
        old["subscriptionId"]: (internal, new["subscriptionId"]),
        new["subscriptionId"]: (internal, None),
    }
    audit = [
        r["command"]
        for r in await db.pool.fetch(
            "SELECT command FROM lifecycle.audit_trail WHERE subscription_id = $1 ORDER BY id", internal
        )
    ]
    assert audit[0] == "create" and "change_plan" in audit and "cancel" in audit
    assert audit.index("undo_scheduled_change") < audit.index("change_plan")
    assert audit.count("cancel") == 1, "the old id's final cancellation is recorded, not applied"


def _month_start(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=UTC)


@pytest.mark.slow  # twelve months through the poller, the lifecycle and billing
async def test_stackit_subscription_renews_twelve_times_through_the_poller_on_a_test_clock(
    settings: Settings, db: Database
) -> None:
    """STACKIT renews at its period end; the poller sees validity move; each renewal lands once.

    FORMATS.md 8a rule 4: a renewal takes effect at the NEW period's start (the new
    ``validFrom``), so the lifecycle finds it due; dated at the old period's last second
    (23:59:59) it would be refused as NOT_DUE and never invoiced.
    """
    api = FakeVendorApi(str(uuid.uuid4()))
    sub = subscription(organization=str(uuid.uuid4()), project=str(uuid.uuid4()), plan="team-monthly")
    sub["orderedAt"] = "2025-01-01T08:00:00Z"
    api.add(sub)
    sid = sub["subscriptionId"]
    internal = derived_id("subscription", CHANNEL, sid)
    clock = f"{settings.topic_namespace}stackit-renewals"
    await create_clock(db.pool, clock, datetime(2025, 1, 1, 8, 0, tzinfo=UTC))
    bootstrap, ns = str(settings.kafka_bootstrap), settings.topic_namespace
    workers = ("intake", "lifecycle", "billing")
    with api.running():
        s = stackit_settings(settings, api, stackit_test_clock=clock)
        poller = StackitPoller.from_settings(s, db, catalog=cached_catalog(None))
        try:
            async with running_workers(settings, db, names=workers):
                async with TopicReader(
                    bootstrap, f"{ns}{topics.SUBSCRIPTIONS_COMMAND_REJECTIONS}"
                ) as refused:
                    first = await poller.poll_once()  # PENDING: create, and the poller approves it
                    assert first.approved == [sid]
                    # the vendor's approval starts the first term: to the end of January
                    api.update(sid, validFrom="2025-01-01T08:05:00Z", validUntil="2025-01-31T23:59:59Z")
                    await poller.poll_once()  # ACTIVE: activate
                    await wait_quiet(db.pool, bootstrap, ns, clock, services=workers)
                    for month in range(2, 14):
                        start = _month_start(2025, month)
                        end = _month_start(2025, month + 1) - timedelta(seconds=1)
                        # STACKIT renews at the boundary; the poll right after it publishes the renewal
                        api.update(sid, validFrom=_ts(start), validUntil=_ts(end))
                        report = await poller.poll_once()
                        assert report.published == 1, f"month {month}: the moved validity is published"
                        await wait_quiet(db.pool, bootstrap, ns, clock, services=workers)
                        # business time moves into the new period (no second renewal may fire)
                        await advance_clock(
                            db.pool, bootstrap, ns, clock, start + timedelta(hours=12), services=workers
                        )
                    await refused.settle(0.5)
        finally:
            await poller.client.aclose()
    renewals = await db.pool.fetch(
        "SELECT actor, effective_at FROM lifecycle.audit_trail WHERE subscription_id = $1 AND command = 'renew' "
        "ORDER BY effective_at",
        internal,
    )
    assert [r["actor"] for r in renewals] == [f"channel:{CHANNEL}"] * 12, "each renewal came from STACKIT"
    assert [r["effective_at"] for r in renewals] == [_month_start(2025, m) for m in range(2, 14)]
    refused_renewals = [
        v["data"] for v in refused.values() if v["subject"] == internal and v["data"]["command"] == "renew"
    ]
    assert refused_renewals == [], "no renewal refused (NOT_DUE)"
    invoices = await db.pool.fetch(
        "SELECT issue_date FROM billing.documents WHERE subscription_id = $1 AND document_type = 'invoice' "
        "ORDER BY issue_date",
        internal,
    )
    issued = [r["issue_date"] for r in invoices]
    assert len(issued) == 13, f"the first term and 12 renewals, each invoiced once: {issued}"
    assert issued[1:] == [_month_start(2025, m).date() for m in range(2, 14)]
