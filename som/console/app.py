"""The console's web application (Starlette, Jinja2 templates, no front-end build).

Every page reads through the services' ``views.py`` (the CLI's queries) and every action goes
through the CLI's own code paths (:func:`som.commands.approvals.send_command`,
:func:`som.dlq.replay`). Roles are checked on the server for every request; every POST carries the
session's CSRF token; every action is written to ``console.actions`` and, for subscription
commands, the lifecycle's audit trail names the console user as actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.billing import views as billing_views
from services.entitlements import views as entitlement_views
from services.intake import views as intake_views
from services.lifecycle import views as lifecycle_views
from services.lifecycle.domain.model import CommandKind, Status
from services.lifecycle.domain.table import Deny, lookup
from services.registry import WORKERS
from shared import operators
from shared.contracts.commands import CommandParams, params_for
from shared.db.pool import create_pool
from shared.messaging.views import outbox_backlog
from shared.settings import Settings
from shared.timekeeping import consumer_lag, pending_timers
from som.console import oidc
from som.console.security import hash_password, may, needs_rehash, new_token, same_token, verify_password

log = logging.getLogger("som.console")
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "som_session"
LOGIN_CSRF_COOKIE = "som_login_csrf"
OIDC_COOKIE = "som_oidc"
PAGE_SIZE = 50
ASYNCAPI_DOC = HERE.parents[1] / "schemas" / "asyncapi.yaml"

# Console actions on a subscription: the lifecycle command each one sends.
SUBSCRIPTION_ACTIONS: dict[str, CommandKind] = {
    "approve": CommandKind.APPROVE,
    "reject": CommandKind.REJECT,
    "suspend": CommandKind.SUSPEND,
    "reactivate": CommandKind.REACTIVATE,
    "cancel": CommandKind.CANCEL,
    "terminate": CommandKind.TERMINATE,
}
# How long an action waits to show the lifecycle's answer before saying "sent".
OUTCOME_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class User:
    """The logged-in user of a request."""

    name: str
    role: str
    csrf_token: str


class Denied(Exception):
    """The user may not do this (403)."""


class _Templates:
    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(HERE / "templates")),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["money"] = _money
        self.env.filters["when"] = _when

    def render(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status_code)


def _money(value: Any, currency: str | None = None) -> str:
    if value is None:
        return ""
    text = str(Decimal(str(value)))  # exact: never through float
    return f"{text} {currency}" if currency else text


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def allowed_actions(status: str) -> dict[str, list[str]]:
    """Console actions the state table allows in ``status``, with the variants (timings) allowed."""
    row = Status(status)
    found: dict[str, list[str]] = {}
    for action, kind in SUBSCRIPTION_ACTIONS.items():
        variants = ["immediate", "period_end"] if kind is CommandKind.CANCEL else [None]
        ok = [v or "" for v in variants if isinstance(_target(row, kind, v), Status)]
        if ok:
            found[action] = ok
    return found


def _target(row: Status | None, kind: CommandKind, variant: str | None) -> Status | Deny:
    if kind is CommandKind.APPROVE and variant is None:
        variant = "no_trial"  # both variants are refused alike outside pending_approval
    return lookup(row, kind, variant)


class Console:
    """The application's state: settings, the database pool and the templates."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool | None) -> None:
        self.settings = settings
        self.pool: asyncpg.Pool | None = pool
        self.templates = _Templates()
        self._oidc_provider: oidc.Provider | None = None

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "the console's database pool is not open"
        return self.pool

    # -- sessions ------------------------------------------------------------------------------

    async def user(self, request: Request) -> User | None:
        sid = request.cookies.get(SESSION_COOKIE)
        if not sid:
            return None
        found = await operators.session(self.db, sid)
        if found is None:
            return None
        return User(found["user_name"], found["role"], found["csrf_token"])

    def render(
        self, request: Request, name: str, user: User | None, status_code: int = 200, **ctx: Any
    ) -> HTMLResponse:
        return self.templates.render(
            name,
            status_code=status_code,
            user=user,
            request=request,
            may=(lambda action: user is not None and may(user.role, action)),
            **ctx,
        )

    async def checked_form(self, request: Request, user: User) -> FormData:
        """The POSTed form, after its CSRF token matched the session's."""
        form = await request.form()
        given = form.get("csrf_token")
        if not same_token(user.csrf_token, given if isinstance(given, str) else None):
            raise Denied("the form's CSRF token does not match the session")
        return form

    # -- pages -----------------------------------------------------------------------------

    async def overview(self, request: Request, user: User) -> Response:
        s = self.settings
        counts = await lifecycle_views.status_counts(self.db)
        orders_last_minute = await intake_views.orders_since(self.db, seconds=60)
        backlog = await outbox_backlog(self.db)
        renewals = await billing_views.renewal_payment_outcomes(self.db, since_hours=24)
        attempts = sum(renewals.values())
        rate = (
            f"{Decimal(renewals.get('succeeded', 0) * 100) / Decimal(attempts):.1f} %" if attempts else "n/a"
        )
        rejections = await intake_views.recent_rejections(self.db, top=10, since_hours=24)
        lag: dict[str, str] = {}
        dlq_depth: str = "n/a"
        if s.kafka_bootstrap:
            for w in WORKERS:
                try:
                    async with asyncio.timeout(5):
                        lag[w] = str(await consumer_lag(s.kafka_bootstrap, s.topic_namespace, [w]))
                except Exception as exc:  # the broker may be away: the page still shows the rest
                    lag[w] = f"n/a ({type(exc).__name__})"
            try:
                async with asyncio.timeout(10):
                    letters = await self._dead_letters(None)
                dlq_depth = f"{len(letters)} ({sum(x.awaits_replay for x in letters)} not replayed)"
            except Exception as exc:
                dlq_depth = f"n/a ({type(exc).__name__})"
        return self.render(
            request,
            "overview.html",
            user,
            counts=counts,
            orders_last_minute=orders_last_minute,
            backlog=backlog,
            renewal_rate=rate,
            renewal_attempts=attempts,
            rejections=rejections,
            lag=lag,
            dlq_depth=dlq_depth,
        )

    async def subscriptions(self, request: Request, user: User) -> Response:
        q = request.query_params
        filters = {
            k: (q.get(k) or "").strip() or None for k in ("status", "channel", "customer", "plan", "q")
        }
        after: tuple[datetime, str] | None = None
        if q.get("after"):
            at, _, sid = str(q["after"]).partition("|")
            try:
                after = (datetime.fromisoformat(at), sid)
            except ValueError:
                return self.render(request, "error.html", user, 400, message="bad page cursor")
        rows = await lifecycle_views.page_subscriptions(
            self.db,
            status=filters["status"],
            channel=filters["channel"],
            customer=filters["customer"],
            plan=filters["plan"],
            search=filters["q"],
            after=after,
            limit=PAGE_SIZE + 1,
        )
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        next_cursor = f"{rows[-1]['updated_at'].isoformat()}|{rows[-1]['subscription_id']}" if more else None
        return self.render(
            request,
            "subscriptions.html",
            user,
            rows=rows,
            filters=filters,
            statuses=[s.value for s in Status],
            next_cursor=next_cursor,
            first_page=after is None,
        )

    async def subscription(self, request: Request, user: User) -> Response:
        sid = request.path_params["subscription_id"]
        sub = await lifecycle_views.subscription(self.db, sid)
        if sub is None:
            return self.render(request, "error.html", user, 404, message=f"no subscription {sid}")
        timeline = await lifecycle_views.audit_trail(self.db, sid)
        return self.render(
            request,
            "subscription.html",
            user,
            sub=sub,
            domain=sub["state"].get("domain", {}),
            commercial=sub["state"].get("commercial", {}),
            timeline=timeline,
            users=await lifecycle_views.users(self.db, sid),
            instances=await lifecycle_views.instances(self.db, sid),
            timers=await pending_timers(self.db, sid),
            documents=await billing_views.documents(self.db, sid),
            entitlements=await entitlement_views.entitlement_set(self.db, sid),
            entitlement_versions=await entitlement_views.subscription_history(self.db, sid),
            access_users=await entitlement_views.users(self.db, sid),
            console_actions=await operators.actions(self.db, target=sid),
            actions=allowed_actions(sub["status"]),
            traces_url=(self.settings.traces_url or "").rstrip("/"),
            message=request.query_params.get("msg"),
        )

    async def approvals(self, request: Request, user: User) -> Response:
        rows = await lifecycle_views.pending_approvals(self.db)
        return self.render(
            request, "approvals.html", user, rows=rows, message=request.query_params.get("msg")
        )

    async def _dead_letters(self, topic: str | None) -> list[Any]:
        from som.dlq import dlq_topics, read_dead_letters

        s = self.settings
        assert s.kafka_bootstrap
        names = [topic] if topic else await dlq_topics(s.kafka_bootstrap, s.topic_namespace)
        return await read_dead_letters(s.kafka_bootstrap, names, self.db)

    async def dead_letters(self, request: Request, user: User) -> Response:
        from som.dlq import dlq_topics

        s = self.settings
        assert s.kafka_bootstrap
        topics = await dlq_topics(s.kafka_bootstrap, s.topic_namespace)
        chosen = request.query_params.get("topic")
        if chosen and chosen not in topics:
            return self.render(request, "error.html", user, 404, message=f"no dead-letter topic {chosen}")
        letters = await self._dead_letters(None)
        depth: dict[str, int] = {t: 0 for t in topics}
        for x in letters:
            depth[x.dlq_topic] = depth.get(x.dlq_topic, 0) + 1
        shown = [x.summary() for x in letters if not chosen or x.dlq_topic == chosen]
        return self.render(
            request,
            "dlq.html",
            user,
            depth=depth,
            letters=shown,
            chosen=chosen,
            message=request.query_params.get("msg"),
        )

    async def dead_letter(self, request: Request, user: User) -> Response:
        q = request.query_params
        letter = await self._find_letter(q.get("topic", ""), q.get("partition", ""), q.get("offset", ""))
        if letter is None:
            return self.render(request, "error.html", user, 404, message="no such dead letter")
        return self.render(
            request,
            "dlq_record.html",
            user,
            letter=letter,
            summary=letter.summary(),
            payload=letter.value.decode("utf-8", "replace"),
            message=q.get("msg"),
        )

    async def _find_letter(self, topic: str, partition: str, offset: str) -> Any:
        if not topic or not partition.isdigit() or not offset.isdigit():
            return None
        for x in await self._dead_letters(topic):
            if x.partition == int(partition) and x.offset == int(offset):
                return x
        return None

    async def failures(self, request: Request, user: User) -> Response:
        hours = float(request.query_params.get("hours") or 24 * 7)
        by_channel = await intake_views.rejections_by_channel(self.db, top=20, since_hours=hours)
        return self.render(request, "failures.html", user, by_channel=by_channel, hours=hours)

    async def customer(self, request: Request, user: User) -> Response:
        cid = request.path_params["customer_id"]
        subs = await lifecycle_views.page_subscriptions(self.db, customer=cid, limit=500)
        docs = await billing_views.customer_documents(self.db, cid)
        balance: dict[str, Decimal] = {}
        for d in docs:
            if d["status"] == "open" and d["document_type"] == "invoice":
                balance[d["currency"]] = balance.get(d["currency"], Decimal(0)) + Decimal(
                    str(d["amount_due"])
                )
        if not subs and not docs:
            return self.render(request, "error.html", user, 404, message=f"no customer {cid}")
        return self.render(
            request, "customer.html", user, customer_id=cid, subs=subs, docs=docs, balance=balance
        )

    async def audit(self, request: Request, user: User) -> Response:
        if not may(user.role, "console_audit"):
            raise Denied("console_audit")
        rows = await operators.actions(self.db, limit=200)
        return self.render(request, "audit.html", user, rows=rows)

    async def events_doc(self, request: Request, user: User) -> Response:
        if not ASYNCAPI_DOC.exists():
            return self.render(
                request, "error.html", user, 404, message="schemas/asyncapi.yaml is not generated yet"
            )
        text = await asyncio.to_thread(ASYNCAPI_DOC.read_text)
        return self.render(request, "events.html", user, text=text)

    # -- actions ---------------------------------------------------------------------------

    async def subscription_action(self, request: Request, user: User) -> Response:
        from som.commands.approvals import send_command
        from som.common import UserError

        sid = request.path_params["subscription_id"]
        action = request.path_params["action"]
        form = await self.checked_form(request, user)
        if action not in SUBSCRIPTION_ACTIONS:
            return self.render(request, "error.html", user, 404, message=f"no action {action}")
        if not may(user.role, action):
            raise Denied(action)
        reason = str(form.get("reason") or "").strip()
        back = str(form.get("back") or f"/subscriptions/{sid}")
        if not back.startswith("/") or back.startswith("//"):
            back = f"/subscriptions/{sid}"  # never redirect off the console
        if not reason:
            return self.render(request, "error.html", user, 400, message="a reason is required")
        timing = str(form.get("timing") or "immediate")
        kind = SUBSCRIPTION_ACTIONS[action]
        params: CommandParams | None = None
        variant: str | None = None
        if kind is CommandKind.CANCEL:
            if timing not in ("immediate", "period_end"):
                return self.render(request, "error.html", user, 400, message=f"bad timing {timing}")
            params, variant = params_for("cancel", timing=timing), timing
        status = await lifecycle_views.status(self.db, sid)
        detail: dict[str, Any] = {"timing": timing} if variant else {}
        if status is None:
            outcome = f"refused: no subscription {sid}"
            await self._record(user, action, sid, reason, outcome, detail)
            return self.render(request, "error.html", user, 404, message=outcome)
        target = _target(Status(status), kind, variant)
        if isinstance(target, Deny):
            # What the lifecycle would answer on subscriptions.command-rejections: nothing is sent.
            outcome = f"rejected: {target.code.value}: {target.message}"
            await self._record(user, action, sid, reason, outcome, detail)
            return self.render(request, "error.html", user, 409, message=f"{action} {sid}: {outcome}")
        try:
            key = await send_command(
                action,
                sid,
                actor=f"console:{user.name}",
                reason=reason,
                params=params,
                settings=self.settings,
                source="som/console",
            )
        except UserError as exc:
            await self._record(user, action, sid, reason, f"refused: {exc}", detail)
            return self.render(request, "error.html", user, 409, message=str(exc))
        outcome = await self._wait_outcome(key)
        await self._record(user, action, sid, reason, outcome, {**detail, "idempotency_key": key})
        return RedirectResponse(_with_msg(back, f"{action}: {outcome}"), status_code=303)

    async def _wait_outcome(self, key: str) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OUTCOME_WAIT_SECONDS
        while loop.time() < deadline:
            found = await lifecycle_views.command_outcome(self.db, key)
            if found is not None and found != "pending":
                return found
            await asyncio.sleep(0.2)
        return "sent (not processed yet)"

    async def replay_action(self, request: Request, user: User) -> Response:
        from som.dlq import AlreadyReplayed, replay

        form = await self.checked_form(request, user)
        edited = form.get("edited") == "on"
        force = form.get("force") == "on"
        for needed in (
            "dlq_replay",
            *(["dlq_replay_edited"] if edited else []),
            *(["dlq_replay_force"] if force else []),
        ):
            if not may(user.role, needed):
                raise Denied(needed)
        topic, partition, offset = (str(form.get(k) or "") for k in ("topic", "partition", "offset"))
        reason = str(form.get("reason") or "").strip()
        if not reason:
            return self.render(request, "error.html", user, 400, message="a reason is required")
        target = f"{topic}/{partition}/{offset}"
        letter = await self._find_letter(topic, partition, offset)
        if letter is None:
            return self.render(request, "error.html", user, 404, message="no such dead letter")
        payload = str(form.get("payload") or "").encode() if edited else None
        assert self.settings.kafka_bootstrap
        try:
            to = await replay(
                self.settings.kafka_bootstrap, self.db, letter, payload_bytes=payload, force=force
            )
        except AlreadyReplayed as exc:
            outcome = f"refused: {exc}"
            await self._record(
                user, "dlq_replay", target, reason, outcome, {"edited": edited, "force": force}
            )
            return self.render(request, "error.html", user, 409, message=f"{exc}; an admin may force it")
        outcome = f"replayed to {to}"
        await self._record(user, "dlq_replay", target, reason, outcome, {"edited": edited, "force": force})
        back = f"/dlq/record?topic={topic}&partition={partition}&offset={offset}"
        return RedirectResponse(_with_msg(back, outcome), status_code=303)

    async def _record(
        self, user: User, action: str, target: str, reason: str | None, outcome: str, detail: dict[str, Any]
    ) -> None:
        await operators.record_action(
            self.db,
            user_name=user.name,
            role=user.role,
            action=action,
            target=target,
            reason=reason,
            outcome=outcome,
            detail=detail,
        )
        log.info("console action %s on %s by %s: %s", action, target, user.name, outcome)

    # -- login -----------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_token()
        response = self.render(
            request, "login.html", None, csrf_token=token, error=None, sso=self._oidc_configured()
        )
        self._set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        token = request.cookies.get(LOGIN_CSRF_COOKIE)
        given = form.get("csrf_token")
        if not same_token(token, given if isinstance(given, str) else None):
            return self.render(
                request, "error.html", None, 403, message="forbidden: CSRF token missing or wrong"
            )
        name = str(form.get("username") or "").strip()
        password = str(form.get("password") or "")
        ip = request.client.host if request.client else "unknown"
        limit = self.settings.console_login_limit
        if await operators.recent_login_failures(self.db, name, ip, 60) >= limit:
            return self.render(
                request,
                "login.html",
                None,
                429,
                csrf_token=token,
                error="too many failed logins: wait a minute",
            )
        found = await operators.user(self.db, name)
        # Hashing runs in a thread: argon2 is slow on purpose and must not stall other requests.
        ok = await asyncio.to_thread(verify_password, found["password_hash"] if found else None, password)
        if not ok or found is None:
            await operators.record_login_failure(self.db, name, ip)
            return self.render(
                request, "login.html", None, 401, csrf_token=token, error="wrong user name or password"
            )
        if needs_rehash(found["password_hash"]):
            await operators.set_password_hash(self.db, name, await asyncio.to_thread(hash_password, password))
        return await self._start_session(request, name)

    async def _start_session(self, request: Request, name: str) -> Response:
        # A fresh id at every login: a session id planted before login is never promoted.
        sid, csrf = new_token(), new_token()
        ttl = int(self.settings.console_session_hours * 3600)
        await operators.create_session(self.db, sid, name, csrf, ttl)
        response = RedirectResponse("/", status_code=303)
        self._set_cookie(request, response, SESSION_COOKIE, sid, max_age=ttl)
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        response.delete_cookie(OIDC_COOKIE)
        return response

    # -- OIDC (authorization-code flow) ------------------------------------------------------

    def _oidc_configured(self) -> bool:
        s = self.settings
        return bool(s.oidc_issuer and s.oidc_client_id and s.oidc_client_secret)

    async def _provider(self) -> oidc.Provider:
        if self._oidc_provider is None:
            assert self.settings.oidc_issuer
            self._oidc_provider = await oidc.discover(self.settings.oidc_issuer)
        return self._oidc_provider

    def _redirect_uri(self, request: Request) -> str:
        base = (self.settings.console_public_url or str(request.base_url)).rstrip("/")
        return f"{base}/login/oidc/callback"

    async def oidc_start(self, request: Request) -> Response:
        if not self._oidc_configured():
            return self.render(request, "error.html", None, 404, message="OIDC login is not configured")
        assert self.settings.oidc_client_id
        state, nonce = new_token(), new_token()
        provider = await self._provider()
        url = oidc.authorization_url(
            provider, self.settings.oidc_client_id, self._redirect_uri(request), state, nonce
        )
        response = RedirectResponse(url, status_code=303)
        # SameSite=Lax still travels on the provider's top-level redirect back to us.
        self._set_cookie(request, response, OIDC_COOKIE, f"{state}.{nonce}", max_age=600)
        return response

    async def oidc_callback(self, request: Request) -> Response:
        if not self._oidc_configured():
            return self.render(request, "error.html", None, 404, message="OIDC login is not configured")
        s = self.settings
        assert s.oidc_client_id and s.oidc_client_secret
        state, _, nonce = (request.cookies.get(OIDC_COOKIE) or "").partition(".")
        if not same_token(state, request.query_params.get("state")) or not nonce:
            return self.render(
                request, "error.html", None, 403, message="forbidden: login state does not match"
            )
        code = request.query_params.get("code")
        if not code:
            error = request.query_params.get("error", "no code")
            return self.render(request, "error.html", None, 403, message=f"the provider refused: {error}")
        try:
            provider = await self._provider()
            token = await oidc.exchange_code(
                provider, s.oidc_client_id, s.oidc_client_secret, code, self._redirect_uri(request)
            )
            claims = await oidc.verify_id_token(provider, token, s.oidc_client_id, nonce)
        except (oidc.OidcError, httpx.HTTPError) as exc:
            log.warning("OIDC login refused: %s", exc)
            return self.render(request, "error.html", None, 403, message=f"forbidden: {exc}")
        name = str(claims.get(s.oidc_username_claim) or "")
        if not name or await operators.user(self.db, name) is None:
            return self.render(
                request,
                "error.html",
                None,
                403,
                message=f"forbidden: no console user {name!r} (an admin adds it: som users add NAME --role ROLE)",
            )
        return await self._start_session(request, name)

    async def logout(self, request: Request, user: User) -> Response:
        await self.checked_form(request, user)
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            await operators.delete_session(self.db, sid)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @staticmethod
    def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",  # Secure whenever served over TLS
            path="/",
        )


def _with_msg(url: str, msg: str) -> str:
    from urllib.parse import quote

    return f"{url}{'&' if '?' in url else '?'}msg={quote(msg)}"


Handler = Callable[[Request, User], Awaitable[Response]]


def _guarded(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Every page and action: a logged-in user, else the login page (GET) or 401 (POST)."""

    async def endpoint(request: Request) -> Response:
        user = await console.user(request)
        if user is None:
            if request.method == "GET":
                return RedirectResponse("/login", status_code=303)
            return console.render(request, "error.html", None, 401, message="log in first")
        try:
            return await handler(request, user)
        except Denied as exc:
            return console.render(request, "error.html", user, 403, message=f"forbidden: {exc}")

    return endpoint


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response


def create_app(settings: Settings, pool: asyncpg.Pool | None = None) -> Starlette:
    """The console application; without ``pool`` it opens (and closes) its own on start-up."""
    console = Console(settings, pool)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        own = console.pool is None
        if own:
            assert settings.database_url, "the console needs SOM_DATABASE_URL or a running `som up`"
            console.pool = await create_pool(settings.database_url, min_size=1, max_size=8)
        try:
            yield
        finally:
            if own and console.pool is not None:
                await console.pool.close()
                console.pool = None

    def g(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return _guarded(console, handler)

    routes = [
        Route("/login", console.login_page, methods=["GET"]),
        Route("/login", console.login, methods=["POST"]),
        Route("/login/oidc", console.oidc_start, methods=["GET"]),
        Route("/login/oidc/callback", console.oidc_callback, methods=["GET"]),
        Route("/logout", g(console.logout), methods=["POST"]),
        Route("/", g(console.overview)),
        Route("/subscriptions", g(console.subscriptions)),
        Route("/subscriptions/{subscription_id}", g(console.subscription)),
        Route("/subscriptions/{subscription_id}/{action}", g(console.subscription_action), methods=["POST"]),
        Route("/approvals", g(console.approvals)),
        Route("/dlq", g(console.dead_letters)),
        Route("/dlq/record", g(console.dead_letter)),
        Route("/dlq/replay", g(console.replay_action), methods=["POST"]),
        Route("/failures", g(console.failures)),
        Route("/customers/{customer_id}", g(console.customer)),
        Route("/audit", g(console.audit)),
        Route("/docs/events", g(console.events_doc)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(_SecurityHeaders)])
