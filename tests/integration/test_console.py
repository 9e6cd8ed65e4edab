"""The operator console over HTTP (httpx against the ASGI app) on the real PostgreSQL and broker.

Security: every role is refused (403) what it may not do, a forged or missing CSRF token is
refused, 50 wrong passwords are throttled (429), cookies are HttpOnly and SameSite. Then the
actions themselves: approve and reject through the real lifecycle worker (the audit trail names
the console user), a refusal exactly as the state table words it, and a dead letter replayed once,
as is and edited, through the real intake worker.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from services.lifecycle.store import PgLifecycleStore
from shared import operators
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings
from som.console.app import ASYNCAPI_DOC, create_app
from som.console.security import ACTION_ROLES, may
from tests.integration.console_helpers import PASSWORD, csrf_of, login, make_user, session_token
from tests.integration.helpers import TopicReader, publish, running_workers
from tests.integration.test_lifecycle import new_clock, send, status_of

pytestmark = pytest.mark.integration

BASE = "http://console.test"


@pytest.fixture
async def client(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the console app on the test's database and namespace."""
    app = create_app(settings, db.pool)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


def _client_for(settings: Settings, db: Database, ip: str, base: str = BASE) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, db.pool), client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url=base)


async def _active_subscription(db: Database, settings: Settings) -> str:
    sid = f"{settings.topic_namespace}sub-{uuid.uuid4().hex[:8]}"
    async with db.pool.acquire() as conn:
        await PgLifecycleStore().create(
            conn,
            sid,
            status="active",
            channel="direct",
            customer_id=f"cus-console-{uuid.uuid4().hex[:8]}",
            plan_id="pro",
            state={"domain": {"quantity": 2}, "commercial": {}},
        )
    return sid


async def test_login_required_and_cookie_flags(
    settings: Settings, db: Database, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/subscriptions")).status_code == 303
    assert (await client.post("/subscriptions/x/approve", data={"reason": "r"})).status_code == 401
    name = await make_user(db, "viewer")
    done = await login(client, name)
    assert done.status_code == 303 and done.headers["location"] == "/"
    cookie = done.headers["set-cookie"].lower()
    assert "som_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # plain http here
    assert (await client.get("/")).status_code == 200
    # The AsyncAPI page is there once `schemas/asyncapi.yaml` is generated.
    assert (await client.get("/docs/events")).status_code == (200 if ASYNCAPI_DOC.exists() else 404)
    async with _client_for(settings, db, "10.0.0.2", base="https://console.test") as tls:
        secure = await login(tls, name)
        assert "secure" in secure.headers["set-cookie"].lower()
    # Only a hash of the session id is stored.
    sid = client.cookies["som_session"]
    stored = await db.pool.fetchval("SELECT count(*) FROM console.sessions WHERE id_hash = $1", sid)
    assert stored == 0
    assert await operators.session(db.pool, sid) is not None


@pytest.mark.parametrize("role", ["viewer", "operator", "approver", "admin"])
async def test_each_role_gets_403_on_what_it_may_not_do(
    settings: Settings, db: Database, client: httpx.AsyncClient, role: str
) -> None:
    name = await make_user(db, role)
    assert (await login(client, name)).status_code == 303
    token = await session_token(client)
    missing = f"{settings.topic_namespace}no-such-sub"
    dlq = topics.dlq_topic(f"{settings.topic_namespace}{topics.inbound('direct')}", settings.group("intake"))
    checked = 0
    for action in ("approve", "reject", "suspend", "reactivate", "cancel", "terminate"):
        r = await client.post(
            f"/subscriptions/{missing}/{action}", data={"csrf_token": token, "reason": "test"}
        )
        if may(role, action):
            assert r.status_code == 404, (role, action, r.text)  # allowed, but there is no such subscription
        else:
            assert r.status_code == 403, (role, action, r.text)
            checked += 1
    for action, fields in (
        ("dlq_replay", {}),
        ("dlq_replay_edited", {"edited": "on", "payload": "{}"}),
        ("dlq_replay_force", {"force": "on"}),
    ):
        r = await client.post(
            "/dlq/replay",
            data={
                "csrf_token": token,
                "reason": "test",
                "topic": dlq,
                "partition": "0",
                "offset": "0",
                **fields,
            },
        )
        assert r.status_code == (404 if may(role, action) else 403), (role, action, r.text)
        checked += 0 if may(role, action) else 1
    audit = await client.get("/audit")
    assert audit.status_code == (200 if may(role, "console_audit") else 403)
    # Every role but admin is refused something; the admin is refused nothing.
    refused = sum(1 for a in ACTION_ROLES if not may(role, a))
    assert (checked + (0 if may(role, "console_audit") else 1)) == refused
    assert (refused == 0) == (role == "admin")
    # Every page reads for every role.
    for page in ("/", "/subscriptions", "/approvals", "/dlq", "/failures"):
        assert (await client.get(page)).status_code == 200, page


async def test_forged_csrf_is_refused_and_nothing_is_done(
    settings: Settings, db: Database, client: httpx.AsyncClient
) -> None:
    sid = await _active_subscription(db, settings)
    name = await make_user(db, "admin")
    await login(client, name)
    for forged in ({"csrf_token": "forged"}, {}):
        r = await client.post(f"/subscriptions/{sid}/terminate", data={"reason": "x", **forged})
        assert r.status_code == 403 and "CSRF" in r.text
    assert await operators.actions(db.pool, target=sid) == []
    # Login itself needs the login form's token.
    async with _client_for(settings, db, "10.0.0.3") as fresh:
        r = await fresh.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": "forged"})
        assert r.status_code == 403 and "som_session" not in r.headers.get("set-cookie", "")
    # Logging out is an action too.
    assert (await client.post("/logout", data={"csrf_token": "forged"})).status_code == 403
    assert (await client.get("/")).status_code == 200


async def test_fifty_wrong_passwords_are_throttled(settings: Settings, db: Database) -> None:
    name = await make_user(db, "operator")
    limit = settings.console_login_limit
    async with _client_for(settings, db, "10.9.9.9") as attacker:
        page = await attacker.get("/login")
        token = csrf_of(page.text)
        codes = [
            (
                await attacker.post(
                    "/login", data={"username": name, "password": f"wrong-{i}", "csrf_token": token}
                )
            ).status_code
            for i in range(50)
        ]
        assert codes[:limit] == [401] * limit
        assert codes[limit:] == [429] * (50 - limit)
        # Even the right password is refused from there while the window lasts...
        right = await attacker.post(
            "/login", data={"username": name, "password": PASSWORD, "csrf_token": token}
        )
        assert right.status_code == 429
    # ...but the user is not locked out from elsewhere (the limit is per user and address).
    async with _client_for(settings, db, "10.9.9.10") as owner:
        assert (await login(owner, name)).status_code == 303


async def test_state_table_refusal_is_shown_and_recorded(
    settings: Settings, db: Database, client: httpx.AsyncClient
) -> None:
    sid = await _active_subscription(db, settings)
    name = await make_user(db, "approver")
    await login(client, name)
    token = await session_token(client)
    page = await client.get(f"/subscriptions/{sid}")
    # Active: the state table offers suspend and cancel, not approve, reject or reactivate.
    assert f"/subscriptions/{sid}/suspend" in page.text and f"/subscriptions/{sid}/approve" not in page.text
    assert f"/subscriptions/{sid}/reactivate" not in page.text
    r = await client.post(f"/subscriptions/{sid}/approve", data={"csrf_token": token, "reason": "beta"})
    assert r.status_code == 409
    assert "ALREADY_APPROVED" in r.text and "the subscription was already approved" in r.text
    r = await client.post(f"/subscriptions/{sid}/suspend", data={"csrf_token": token, "reason": ""})
    assert r.status_code == 400  # a reason is required
    [recorded] = await operators.actions(db.pool, target=sid)
    assert recorded["user_name"] == name and recorded["action"] == "approve"
    assert recorded["outcome"].startswith("rejected: ALREADY_APPROVED") and recorded["reason"] == "beta"


async def test_approve_and_reject_through_the_lifecycle_worker(
    settings: Settings, db: Database, client: httpx.AsyncClient
) -> None:
    start = datetime(2025, 9, 1, tzinfo=UTC)
    clock = await new_clock(db, settings, start)
    ok, no = (f"{settings.topic_namespace}sub-{uuid.uuid4().hex[:8]}" for _ in range(2))
    name = await make_user(db, "approver")
    async with running_workers(settings, db, names=("lifecycle", "entitlements")):
        for sid in (ok, no):  # enterprise plans wait for manual approval (packaged policy)
            await send(
                settings, "create", sid, effective_at=start, clock=clock, plan_id="enterprise", quantity=20
            )
            assert await status_of(db, sid, want="pending_approval") == "pending_approval"
        await login(client, name)
        queue = await client.get("/approvals")
        assert ok in queue.text and no in queue.text
        token = csrf_of(queue.text)
        r = await client.post(
            f"/subscriptions/{ok}/approve",
            data={"csrf_token": token, "reason": "contract signed", "back": "/approvals"},
        )
        assert r.status_code == 303 and r.headers["location"].startswith("/approvals?msg=")
        r = await client.post(
            f"/subscriptions/{no}/reject", data={"csrf_token": token, "reason": "no contract"}
        )
        assert r.status_code == 303
        assert await status_of(db, ok, want="active") == "active"
        assert await status_of(db, no, want="terminated") == "terminated"
        for _ in range(100):  # the entitlements worker publishes the approved subscription's second set
            versions = await db.pool.fetchval(
                "SELECT count(*) FROM entitlements.history WHERE subscription_id = $1 AND scope = 'subscription'",
                ok,
            )
            if versions >= 2:
                break
            await asyncio.sleep(0.1)
    for sid, command, reason in ((ok, "approve", "contract signed"), (no, "reject", "no contract")):
        audit = await db.pool.fetch(
            "SELECT command, actor, reason FROM lifecycle.audit_trail WHERE subscription_id = $1 AND command = $2",
            sid,
            command,
        )
        assert [dict(a) for a in audit] == [
            {"command": command, "actor": f"console:{name}", "reason": reason}
        ]
        [action] = await operators.actions(db.pool, target=sid)
        assert action["action"] == command and action["user_name"] == name and action["reason"] == reason
    shown = await client.get(f"/subscriptions/{ok}")
    assert f"console:{name}" in shown.text and "contract signed" in shown.text
    # Entitlement versions, newest first: the approval's set (active), then the pending one.
    table = shown.text.split('class="entitlement-versions"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(
        r"<tr><td>(\d+)</td><td>[^<]*</td><td>([a-z_]+)</td><td>enterprise</td><td>(\w+)</td>", table
    )
    assert rows[:2] == [("2", "active", "approve"), ("1", "pending_approval", "create")], table
    assert ok not in (await client.get("/approvals")).text


async def test_dead_letter_replayed_once_as_is_then_edited(
    settings: Settings, db: Database, client: httpx.AsyncClient
) -> None:
    inbound = f"{settings.topic_namespace}{topics.inbound('direct')}"
    dlq = topics.dlq_topic(inbound, settings.group("intake"))
    operator, approver = await make_user(db, "operator"), await make_user(db, "approver")
    order_id = f"ord-{uuid.uuid4().hex[:8]}"
    broken = b'{"order_id": "' + order_id.encode() + b'", "plan": '  # cannot be parsed: dead-lettered at once
    fixed = {
        "order_id": order_id,
        "customer": {
            "id": f"cus-{order_id}",
            "email": f"{order_id}@customer.example",
            "name": "Ada",
            "region": "eu",
        },
        "plan": "pro",
        "quantity": 2,
        "billing_interval": "P1M",
        "currency": "USD",
        "effective_at": "2025-01-31T10:00:00.000Z",
    }
    async with (
        TopicReader(str(settings.kafka_bootstrap), dlq) as letters,
        TopicReader(str(settings.kafka_bootstrap), inbound) as orders,
        running_workers(settings, db, names=("intake",)),
    ):
        await publish(settings, topics.inbound("direct"), broken, key=order_id)
        [first] = await letters.wait_for(1)
        await login(client, operator)
        listing = await client.get(f"/dlq?topic={dlq}")
        assert listing.status_code == 200 and f"{dlq}[{first.partition}]@{first.offset}" in listing.text
        record = await client.get(
            f"/dlq/record?topic={dlq}&partition={first.partition}&offset={first.offset}"
        )
        assert "x-dlq-reason" in record.text and "permanent" in record.text
        form = {
            "csrf_token": csrf_of(record.text),
            "topic": dlq,
            "partition": str(first.partition),
            "offset": str(first.offset),
            "reason": "after the parser fix",
        }
        r = await client.post("/dlq/replay", data=form)
        assert r.status_code == 303, r.text
        again = await client.post("/dlq/replay", data=form)
        assert again.status_code == 409 and "replayed before" in again.text  # the same once-only rule
        # An operator may not send an edited payload; an approver may.
        edited = {**form, "edited": "on", "payload": json.dumps(fixed), "force": ""}
        assert (await client.post("/dlq/replay", data=edited)).status_code == 403
        async with _client_for(settings, db, "10.0.0.5") as other:
            await login(other, approver)
            token = await session_token(other)
            refused = await other.post("/dlq/replay", data={**edited, "csrf_token": token})
            assert refused.status_code == 409  # replayed once already: edited or not, only an admin forces it
            admin = await make_user(db, "admin")
            await login(other, admin)
            token = await session_token(other)
            r = await other.post("/dlq/replay", data={**edited, "csrf_token": token, "force": "on"})
            assert r.status_code == 303, r.text
        sent = await orders.wait_for(3)  # the original, the replay as is, the edited replay
        assert [r.value for r in sent] == [broken, broken, json.dumps(fixed).encode()]
        assert all(dict(r.headers).get("x-replayed-from") for r in sent[1:])
        await letters.wait_for(2)  # the unchanged replay fails again, as it must
        # The edited order went through intake: a command for the lifecycle.
        for _ in range(100):
            accepted = await db.pool.fetchval(
                "SELECT count(*) FROM intake.orders WHERE channel = 'direct' AND canonical::text LIKE $1",
                f"%{order_id}%",
            )
            if accepted:
                break
            await asyncio.sleep(0.1)
        assert accepted == 1
    outcomes = [
        a["outcome"]
        for a in await operators.actions(db.pool, target=f"{dlq}/{first.partition}/{first.offset}")
    ]
    assert len(outcomes) == 4 and sum(o.startswith("replayed to") for o in outcomes) == 2


async def test_keyset_pages_show_every_subscription_once_in_order(
    settings: Settings, db: Database, client: httpx.AsyncClient
) -> None:
    customer = f"{settings.topic_namespace}cus-pages"
    store = PgLifecycleStore()
    made: list[str] = []
    async with db.pool.acquire() as conn:
        for i in range(123):
            sid = f"{settings.topic_namespace}sub-{i:03d}"
            await store.create(
                conn,
                sid,
                status="active" if i % 2 else "suspended",
                channel="direct",
                customer_id=customer,
                plan_id="pro",
                state={"domain": {"quantity": 1}, "commercial": {}},
                # one owner with an e-mail, found by the free-text search below
                owner=("owner-7", f"Owner7@{settings.topic_namespace}example") if i == 7 else None,
            )
            made.append(sid)
        # Several rows share one updated_at: the subscription id breaks the tie.
        await conn.execute(
            "UPDATE lifecycle.subscriptions SET updated_at = '2025-01-01T00:00:00Z'::timestamptz "
            "+ make_interval(secs => (substring(subscription_id from '...$')::int / 4)) "
            "WHERE customer_id = $1",
            customer,
        )
    await login(client, await make_user(db, "viewer"))
    seen: list[str] = []
    url = f"/subscriptions?customer={customer}"
    pages = 0
    while url:
        page = await client.get(url)
        assert page.status_code == 200
        seen += re.findall(r'<td><a href="/subscriptions/([^"]+)">', page.text)
        nxt = re.search(r'rel="next" href="([^"]+)"', page.text)
        url = html.unescape(nxt.group(1)) if nxt else ""
        pages += 1
    assert pages == 3 and len(seen) == 123 and set(seen) == set(made)
    # Newest change first, ties by id descending.
    stamps = {
        r["subscription_id"]: r["updated_at"]
        for r in await db.pool.fetch(
            "SELECT subscription_id, updated_at FROM lifecycle.subscriptions WHERE customer_id = $1", customer
        )
    }
    assert seen == sorted(made, key=lambda s: (stamps[s], s), reverse=True)
    only = await client.get(f"/subscriptions?customer={customer}&status=suspended")
    assert len(re.findall(r'<td><a href="/subscriptions/', only.text)) == 50  # 62 suspended: a full page
    by_mail = await client.get(f"/subscriptions?q=owner7@{settings.topic_namespace}EXAMPLE")
    assert re.findall(r'<td><a href="/subscriptions/([^"]+)">', by_mail.text) == [made[7]]
    by_id = await client.get(f"/subscriptions?q={made[100]}")
    assert re.findall(r'<td><a href="/subscriptions/([^"]+)">', by_id.text) == [made[100]]


async def test_operator_lifecycle_actions_and_logout(
    settings: Settings, db: Database, client: httpx.AsyncClient
) -> None:
    start = datetime(2025, 9, 1, tzinfo=UTC)
    clock = await new_clock(db, settings, start)
    sid = f"{settings.topic_namespace}sub-{uuid.uuid4().hex[:8]}"
    operator = await make_user(db, "operator")
    async with running_workers(settings, db, names=("lifecycle",)):
        await send(settings, "create", sid, effective_at=start, clock=clock, plan_id="pro", quantity=2)
        assert await status_of(db, sid, want="active") == "active"
        await login(client, operator)
        token = await session_token(client)
        steps = [
            ("suspend", {}, "suspended"),
            ("reactivate", {}, "active"),
            ("cancel", {"timing": "period_end"}, "non_renewing"),
            ("cancel", {"timing": "immediate"}, "cancelled"),
        ]
        for action, extra, want in steps:
            page = await client.get(f"/subscriptions/{sid}")
            assert f"/subscriptions/{sid}/{action}" in page.text, (action, want)
            r = await client.post(
                f"/subscriptions/{sid}/{action}",
                data={"csrf_token": token, "reason": f"step {want}", **extra},
            )
            assert r.status_code == 303 and "applied" in r.headers["location"], r.headers["location"]
            assert await status_of(db, sid, want=want) == want
        # Terminate is an admin's: the operator is refused, nothing is sent.
        r = await client.post(f"/subscriptions/{sid}/terminate", data={"csrf_token": token, "reason": "x"})
        assert r.status_code == 403
    audit = await db.pool.fetch(
        "SELECT command, actor, reason, to_status FROM lifecycle.audit_trail WHERE subscription_id = $1 "
        "AND actor LIKE 'console:%' ORDER BY id",
        sid,
    )
    assert [(a["command"], a["to_status"], a["reason"]) for a in audit] == [
        ("suspend", "suspended", "step suspended"),
        ("reactivate", "active", "step active"),
        ("cancel", "non_renewing", "step non_renewing"),
        ("cancel", "cancelled", "step cancelled"),
    ]
    assert {a["actor"] for a in audit} == {f"console:{operator}"}
    # Logging out ends the session on the server, not only in the browser.
    sid_cookie = client.cookies["som_session"]
    assert (await client.post("/logout", data={"csrf_token": token})).status_code == 303
    assert await operators.session(db.pool, sid_cookie) is None
    client.cookies.set("som_session", sid_cookie)  # a stolen copy of the old cookie
    assert (await client.get("/")).status_code == 303


async def test_som_users_add_makes_a_user_who_can_log_in(
    settings: Settings, db: Database, client: httpx.AsyncClient
) -> None:
    import subprocess
    import sys

    from som.runner import child_env

    name = f"cli-{uuid.uuid4().hex[:8]}"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "som", "users", "add", name, "--role", "approver", "--password-stdin"],
        input="a long enough password\n",
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    stored = await operators.user(db.pool, name)
    assert stored is not None and stored["role"] == "approver"
    assert "a long enough password" not in stored["password_hash"]
    assert (await login(client, name, "a long enough password")).status_code == 303
    bad = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "som", "users", "add", name, "--role", "root", "--password-stdin"],
        input="a long enough password\n",
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "unknown role" in bad.stderr
