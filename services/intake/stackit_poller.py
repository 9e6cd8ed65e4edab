"""STACKIT Marketplace poller: STACKIT has no webhooks, so the intake worker asks.

Per poll:

1. list the vendor project's subscriptions (``GET /v1/vendors/projects/{projectId}/subscriptions``,
   cursor paging, bearer token);
2. in one transaction (under an advisory lock, so two intake processes never publish the same
   change twice): compare the listing with the stored snapshots
   (:func:`services.intake.domain.stackit.diff_listing`), write every change to the outbox for
   ``orders.inbound.stackit_marketplace`` with its ``poll.*`` headers, and store the new
   snapshots. The intake worker then normalizes the payload like any other channel's;
3. after the commit, decide every ``SUBSCRIPTION_PENDING`` subscription not decided yet, with
   the same code the worker runs (:func:`services.intake.pipeline.interpret`): refused by
   validation -> ``POST .../reject``; approval ``manual`` in ``policy.yaml`` -> left to an
   operator; otherwise ``POST .../approve``. A failed vendor call is retried at the next poll.

Records are keyed by ``organizationId:projectId:productId``: a plan change (a new subscription
id that replaces a cancelling one of the same organization, project and product) then stays in
order with the end of the replaced subscription.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from services.intake.domain import stackit
from services.intake.domain.normalizers.stackit_marketplace import PENDING, state_name
from services.intake.handlers import TEST_CLOCK_HEADER
from services.intake.pipeline import interpret
from services.intake.store import PgIntakeStore, StackitSnapshotStore
from shared.catalog import Catalog, cached_catalog
from shared.db.uow import Database
from shared.messaging import topics
from shared.settings import Settings

log = logging.getLogger("som.intake.stackit")
CHANNEL = "stackit_marketplace"
SERVICE = "intake"


class StackitApiError(Exception):
    """The vendor API refused a request or could not be reached."""


class StackitClient:
    """The few calls of the STACKIT Marketplace vendor API the poller needs."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        project_id: str,
        *,
        timeout: float = 10.0,
        page_size: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.project_id = project_id
        self.page_size = page_size
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    @property
    def subscriptions_path(self) -> str:
        """Path of the project's subscription collection."""
        return f"/v1/vendors/projects/{self.project_id}/subscriptions"

    def describe_list(self) -> str:
        """The list request as the transport's ``poll`` audit field shows it."""
        return f"GET {self.base_url}{self.subscriptions_path}"

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StackitApiError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise StackitApiError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription of the project, following ``cursor`` until the last page."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(10_000):  # a cursor that never ends is a vendor bug, not a reason to hang
            params: dict[str, Any] = {"limit": self.page_size}
            if cursor:
                params["cursor"] = cursor
            response = await self._request("GET", self.subscriptions_path, params=params)
            try:
                page = response.json()
            except ValueError as exc:
                raise StackitApiError(f"list response is not JSON: {exc}") from exc
            if not isinstance(page, Mapping) or not isinstance(page.get("items", []), list):
                raise StackitApiError("list response is not {items: [...]}")
            batch = [s for s in page.get("items") or [] if isinstance(s, dict)]
            items.extend(batch)
            next_cursor = page.get("cursor")
            if not batch or not next_cursor or next_cursor == cursor:
                return items
            cursor = str(next_cursor)
        raise StackitApiError("list paging did not end")

    async def approve(self, subscription_id: str) -> None:
        """``POST .../subscriptions/{id}/approve``."""
        await self._request("POST", f"{self.subscriptions_path}/{subscription_id}/approve")

    async def reject(self, subscription_id: str, reason: str | None = None) -> None:
        """``POST .../subscriptions/{id}/reject`` (the reason goes along for the vendor's records)."""
        body = {"reason": reason} if reason else None
        await self._request("POST", f"{self.subscriptions_path}/{subscription_id}/reject", json=body)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()


@dataclass
class PollReport:
    """What one poll did."""

    listed: int = 0
    published: int = 0
    approved: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    awaiting_operator: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: bool = False  # another process held the poll lock

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def correlation_key(subscription: Mapping[str, Any]) -> str:
    """Record key: organization, project and product (what a plan change keeps)."""
    product = subscription.get("product")
    product_id = product.get("productId") if isinstance(product, Mapping) else None
    parts = (subscription.get("organizationId"), subscription.get("projectId"), product_id)
    if all(isinstance(p, str) and p for p in parts):
        return ":".join(str(p) for p in parts)
    return str(subscription.get("subscriptionId") or "stackit")


class StackitPoller:
    """Polls one vendor project; publishes changes through the intake outbox; approves or rejects."""

    def __init__(
        self,
        client: StackitClient,
        db: Database,
        *,
        catalog: Catalog,
        poll_seconds: float = 60.0,
        store: StackitSnapshotStore | None = None,
        test_clock: str | None = None,
        decide: bool = True,
    ) -> None:
        self.client = client
        # publications carry ``som-test-clock`` so the subscriptions live on that test clock
        self.test_clock = test_clock
        # False: what intake would refuse is still rejected here; approvals follow the lifecycle's
        # decision through the fulfilment delivery instead
        self.decide = decide
        self.db = db
        self.catalog = catalog
        self.poll_seconds = poll_seconds
        self.store: StackitSnapshotStore = store or PgIntakeStore()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        db: Database,
        *,
        catalog: Catalog | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> StackitPoller:
        """A poller configured by ``SOM_STACKIT_*``."""
        if not settings.stackit_base_url or not settings.stackit_project_id:
            raise ValueError("the STACKIT poller needs stackit_base_url and stackit_project_id")
        client = StackitClient(
            settings.stackit_base_url,
            settings.stackit_token,
            settings.stackit_project_id,
            timeout=settings.stackit_timeout_seconds,
            page_size=settings.stackit_page_size,
            transport=transport,
        )
        chosen = catalog or cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
        return cls(
            client,
            db,
            catalog=chosen,
            poll_seconds=settings.stackit_poll_seconds,
            test_clock=settings.stackit_test_clock,
            decide=not settings.stackit_fulfilment,
        )

    @property
    def project_id(self) -> str:
        """The vendor project polled."""
        return self.client.project_id

    async def run_forever(self) -> None:
        """Poll every ``poll_seconds`` until cancelled (the intake worker's background task)."""
        log.info("polling STACKIT project %s every %.1fs", self.project_id, self.poll_seconds)
        try:
            while True:
                try:
                    report = await self.poll_once()
                    if report.published or report.errors or report.approved or report.rejected:
                        log.info("STACKIT poll: %s", json.dumps(report.as_dict()))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the vendor or the database is away: try again next time
                    log.warning("STACKIT poll failed: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(self.poll_seconds)
        finally:
            await self.client.aclose()

    async def poll_once(self) -> PollReport:
        """One poll: list, publish changes, store snapshots, decide pending subscriptions."""
        report = PollReport()
        listing = await self.client.list_subscriptions()
        report.listed = len(listing)
        namespace = self.db.namespace
        async with self.db.unit_of_work(SERVICE) as uow:
            lock = f"stackit-poll:{namespace}:{self.project_id}"
            if not await self.store.try_poll_lock(uow.conn, lock):
                report.skipped = True
                return report
            rows = await self.store.load_snapshots(uow.conn, namespace, self.project_id)
            stored = {r.subscription_id: r.snapshot for r in rows}
            decided = {r.subscription_id for r in rows if r.decision}
            publications = stackit.diff_listing(stored, listing, poll=self.client.describe_list())
            by_id = {str(s.get("subscriptionId")): s for s in listing}
            for pub in publications:
                if (
                    not pub.subscription_id
                ):  # a vendor bug; storing it is impossible, sending it every poll noise
                    report.errors.append("a listed subscription has no subscriptionId")
                    continue
                current = json.loads(pub.payload)
                headers = pub.headers()
                if self.test_clock:
                    headers[TEST_CLOCK_HEADER] = self.test_clock
                uow.emit_raw(
                    topics.inbound(CHANNEL), pub.payload, key=correlation_key(current), headers=headers
                )
                await self.store.save_snapshot(
                    uow.conn,
                    namespace,
                    self.project_id,
                    pub.subscription_id,
                    lifecycle_state=state_name(current.get("lifecycleState")),
                    snapshot=current,
                )
            report.published = sum(1 for pub in publications if pub.subscription_id)
        known = list(listing) + [s for sid, s in stored.items() if sid not in by_id]
        for sub in listing:
            sid = str(sub.get("subscriptionId") or "")
            if sid and sid not in decided and state_name(sub.get("lifecycleState")) == PENDING:
                await self._decide(sub, known, report)
        return report

    async def _decide(
        self, sub: Mapping[str, Any], known: list[Mapping[str, Any]], report: PollReport
    ) -> None:
        """Approve, reject or leave a pending subscription, as the intake worker will judge its order."""
        sid = str(sub["subscriptionId"])
        first_sight = stackit.diff_snapshot(None, sub, others=known, poll=self.client.describe_list())
        if first_sight is None:  # cannot happen for a first sight; nothing to judge
            return
        meaning = interpret(CHANNEL, first_sight.payload, first_sight.transport, catalog=self.catalog)
        reasons = list(meaning.reasons) + [r for v in meaning.verdicts for r in v.reasons]
        manual = any(v.policy.approval == "manual" for v in meaning.verdicts)
        try:
            if meaning.disposition in ("rejected", "dead_letter") or reasons:
                text = "; ".join(f"{r.code}: {r.message}" for r in reasons) or str(meaning.error_message)
                await self.client.reject(sid, text)
                decision = "rejected"
                report.rejected.append(sid)
            elif not self.decide:
                return  # approval follows the lifecycle's decision (outbound fulfilment)
            elif manual:
                decision = "manual"
                report.awaiting_operator.append(sid)
            else:
                await self.client.approve(sid)
                decision = "approved"
                report.approved.append(sid)
        except StackitApiError as exc:
            log.warning("STACKIT decision for %s failed (retried next poll): %s", sid, exc)
            report.errors.append(f"{sid}: {exc}")
            return
        await self.store.record_decision(
            self.db.pool,
            self.db.namespace,
            self.project_id,
            sid,
            decision=decision,
            reasons=[r.model_dump() for r in reasons],
            decided_at=datetime.now(UTC),
        )
