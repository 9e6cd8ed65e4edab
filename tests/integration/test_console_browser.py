"""The console in a real browser: Playwright drives the system's Chromium against the console served
by uvicorn, on the real broker and database with the real workers.

One walkthrough: log in, every page, filter, open a subscription, approve one and reject another,
replay a dead letter with an edited payload, and a viewer refused. Results are checked in the
database, on the topics and through the CLI. With ``SOM_CONSOLE_SCREENSHOTS=DIR`` set (what
``som console screenshots`` does) it saves a screenshot of every page there.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.contracts import events as ev
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from som.console.app import create_app
from som.runner import child_env
from tests.integration.console_helpers import PASSWORD, make_user
from tests.integration.helpers import TopicReader, publish, running_workers

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="no system Chromium (apt-get install -y chromium); browser builds cannot be downloaded here",
    ),
]
SHOTS = os.environ.get("SOM_CONSOLE_SCREENSHOTS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def console_url(settings: Settings, db: Database) -> AsyncIterator[str]:
    """The console served by uvicorn in this event loop (it shares the test's pool)."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, db.pool), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task


def _order(order_id: str, plan: str, quantity: int) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer": {
            "id": f"cus-{order_id}",
            "email": f"{order_id}@customer.example",
            "name": "Ada",
            "region": "eu",
        },
        "plan": plan,
        "quantity": quantity,
        "billing_interval": "P1M",
        "currency": "USD",
        # A few days ago on the system clock: a short history, not years of renewals.
        "effective_at": (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }


async def _subscription_of(db: Database, order_id: str, status: str | None = None) -> str:
    """The subscription an order became (waits for the lifecycle, and for ``status``)."""
    for _ in range(300):
        row = await db.pool.fetchrow(
            "SELECT s.subscription_id, s.status FROM intake.orders o JOIN lifecycle.subscriptions s "
            "ON s.subscription_id = o.subscription_id WHERE o.channel = 'direct' AND o.canonical::text LIKE $1",
            f"%{order_id}%",
        )
        if row is not None and (status is None or row["status"] == status):
            return str(row["subscription_id"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} did not become a subscription in status {status}")


async def _som(settings: Settings, *args: str) -> Any:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "som", *args],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_console_walkthrough_in_chromium(settings: Settings, db: Database, console_url: str) -> None:
    from playwright.async_api import Dialog, Page, async_playwright, expect

    run = uuid.uuid4().hex[:6]
    ok_order, no_order, plain = f"ord-{run}-beta1", f"ord-{run}-beta2", f"ord-{run}-pro"
    admin, viewer = await make_user(db, "admin"), await make_user(db, "viewer")
    events_topic = f"{settings.topic_namespace}{topics.SUBSCRIPTIONS_EVENTS}"
    inbound = f"{settings.topic_namespace}{topics.inbound('direct')}"
    dlq = topics.dlq_topic(inbound, settings.group("intake"))
    broken = b'{"order_id": "' + f"ord-{run}-fix".encode() + b'", "plan": '

    async def shot(page: Page, name: str) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)

    async with (
        running_workers(settings, db) as _workers,
        TopicReader(str(settings.kafka_bootstrap), events_topic) as events,
        TopicReader(str(settings.kafka_bootstrap), inbound) as orders,
    ):
        for oid, plan, qty in ((plain, "pro", 3), (ok_order, "enterprise", 20), (no_order, "enterprise", 25)):
            await publish(settings, topics.inbound("direct"), _order(oid, plan, qty), key=oid)
        await publish(settings, topics.inbound("direct"), _order(f"ord-{run}-bad", "platinum", 1))  # rejected
        await publish(settings, topics.inbound("direct"), broken)  # dead-lettered
        plain_sub = await _subscription_of(db, plain, "active")
        ok_sub = await _subscription_of(db, ok_order, "pending_approval")
        no_sub = await _subscription_of(db, no_order, "pending_approval")

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1360, "height": 900})

                async def accept(dialog: Dialog) -> None:
                    await dialog.accept()

                page.on("dialog", accept)  # the actions' "are you sure?"

                # Log in.
                await page.goto(f"{console_url}/subscriptions")
                await expect(page).to_have_url(f"{console_url}/login")
                await shot(page, "01-login")
                await page.fill("input[name=username]", admin)
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button:has-text('Log in')")
                await expect(page.locator("h1")).to_have_text("Overview")
                await expect(page.locator(".who")).to_contain_text(f"{admin} (admin)")
                await shot(page, "02-overview")

                # Filter: the status select submits by itself.
                await page.click("nav >> text=Subscriptions")
                await page.select_option("select[name=status]", "pending_approval")
                await expect(page).to_have_url(
                    f"{console_url}/subscriptions?status=pending_approval&channel=&customer=&plan=&q="
                )
                rows = page.locator("table.list tbody tr")
                await expect(rows.filter(has_text=ok_sub)).to_have_count(1)
                await expect(rows.filter(has_text=plain_sub)).to_have_count(0)
                await shot(page, "03-subscriptions")
                await page.fill("input[name=q]", f"{plain}@customer.example")  # free text: e-mail
                await page.select_option("select[name=status]", "")
                await expect(rows).to_have_count(1)
                await expect(rows.first).to_contain_text(plain_sub)

                # Open a subscription.
                await page.click(f"a:has-text('{plain_sub}')")
                await expect(page.locator("h1")).to_contain_text(plain_sub)
                await expect(page.locator("h1 .status")).to_have_text("active")
                await expect(page.locator("text=create").first).to_be_visible()
                await expect(page.locator("form.action button[value=suspend]")).to_be_visible()
                await expect(page.locator("form.action button[value=approve]")).to_have_count(0)
                for _ in range(100):  # billing's invoice arrives on its own time
                    if await page.locator("td:has-text('INV-')").count():
                        break
                    await page.reload()
                    await asyncio.sleep(0.2)
                await shot(page, "04-subscription")
                await page.click("td >> a[href^='/customers/']")
                await expect(page.locator("h1")).to_contain_text("Customer")
                await expect(page.locator("table.list").first).to_contain_text(plain_sub)
                await shot(page, "05-customer")

                # Approve from the queue, reject from the detail page; each asks for a reason.
                await page.click("nav >> text=Approvals")
                row = page.locator("tr", has_text=ok_sub)
                await row.locator("form:has(button[value=approve]) input[name=reason]").fill(
                    "beta contract signed"
                )
                await shot(page, "06-approvals")
                await row.locator("button[value=approve]").click()
                await expect(page.locator(".flash")).to_have_text("approve: applied")
                await expect(page.locator("tr", has_text=ok_sub)).to_have_count(0)
                await page.goto(f"{console_url}/subscriptions/{no_sub}")
                await page.locator("form:has(button[value=reject]) input[name=reason]").fill("no contract")
                await page.click("button[value=reject]")
                await expect(page.locator(".flash")).to_have_text("reject: applied")
                await expect(page.locator("h1 .status")).to_have_text("terminated")
                await expect(page.locator("td", has_text=f"console:{admin}").first).to_be_visible()

                # Dead letters: inspect, edit the payload, replay.
                await page.click("nav >> text=Dead letters")
                await page.click(f"a:has-text('{dlq}[')")
                await expect(page.locator("th", has_text="x-dlq-reason")).to_be_visible()
                await page.fill("textarea[name=payload]", json.dumps(_order(f"ord-{run}-fix", "pro", 1)))
                await expect(page.locator("input[name=edited]")).to_be_checked()  # the script ticks it
                await page.fill("form.replay input[name=reason]", "fixed truncated JSON")
                await shot(page, "07-dead-letter")
                await page.click("form.replay button")
                await expect(page.locator(".flash")).to_have_text(f"replayed to {inbound}")
                await expect(page.locator("h1 .status")).to_have_text("replayed")
                await page.click("nav >> text=Dead letters")
                await shot(page, "08-dead-letters")

                await page.click("nav >> text=Intake failures")
                await expect(page.locator("h2", has_text="direct")).to_be_visible()
                await expect(page.locator("td", has_text="UNKNOWN_PLAN").first).to_be_visible()
                await shot(page, "09-intake-failures")
                await page.click("nav >> text=Console audit")
                # The session database is shared with other tests: count this walkthrough's admin only.
                await expect(
                    page.locator("tr", has_text="dlq_replay").filter(has_text=f"{admin}")
                ).to_have_count(1)
                await shot(page, "10-console-audit")
                await page.click("nav >> text=Overview")
                await shot(page, "02-overview")  # again, now with the traffic of the walkthrough

                # A viewer sees no action and is refused one sent by hand.
                context = await browser.new_context()
                vpage = await context.new_page()
                await vpage.goto(f"{console_url}/login")
                await vpage.fill("input[name=username]", viewer)
                await vpage.fill("input[name=password]", PASSWORD)
                await vpage.click("button:has-text('Log in')")
                await vpage.goto(f"{console_url}/subscriptions/{plain_sub}")
                await expect(vpage.locator("form.action")).to_have_count(0)
                await expect(vpage.locator("text=suspend: needs a higher role")).to_be_visible()
                token = await vpage.locator("input[name=csrf_token]").first.get_attribute("value")
                refused = await context.request.post(
                    f"{console_url}/subscriptions/{plain_sub}/suspend",
                    form={"csrf_token": token or "", "reason": "trying"},
                )
                assert refused.status == 403
                await context.close()
            finally:
                await browser.close()

        # The results, from the topics and through the CLI.
        changed: set[tuple[str, str]] = set()
        for _ in range(300):  # until both changes were read (or give up and let the assert say so)
            changed = {
                (doc["subject"], doc["data"].get("snapshot", {}).get("status"))
                for doc in (json.loads(r.value) for r in events.records)
                if doc["type"] == ev.SUBSCRIPTION_STATE_CHANGED
            }
            if {(ok_sub, "active"), (no_sub, "terminated")} <= changed:
                break
            await events.poll()
        assert (ok_sub, "active") in changed and (no_sub, "terminated") in changed
        replayed = [r for r in await orders.wait_for(6) if dict(r.headers).get("x-replayed-from")]
        assert len(replayed) == 1 and json.loads(replayed[0].value)["order_id"] == f"ord-{run}-fix"
        await _subscription_of(db, f"ord-{run}-fix", "active")
        shown = await _som(settings, "subscriptions", "show", ok_sub, "--json")
        assert shown["subscription"]["status"] == "active"
        assert [a["actor"] for a in shown["audit"] if a["command"] == "approve"] == [f"console:{admin}"]
        listed = await _som(settings, "dlq", "list", "--topic", dlq, "--json")
        assert [r["replayed"] for r in listed] == [True]
