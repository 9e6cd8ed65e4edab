"""Outbound fulfilment: lifecycle changes -> pending vendor calls (in the consuming transaction) -> calls.

1. :class:`FulfilmentHandlers` consumes ``subscriptions.events`` and ``subscriptions.command-rejections``.
   For a subscription of a marketplace channel it records the vendor calls the change asks for
   (:mod:`services.intake.domain.fulfilment`) in ``intake.vendor_calls``, in the same transaction as
   the inbox row: a redelivered event records nothing new (unique key).
2. :class:`FulfilmentDelivery` (a background task of the intake worker) claims due calls in a committed
   transaction (state ``in_flight``), makes each call, and records the acknowledgement. A failure is
   retried with backoff; a call whose vendor deadline passed publishes ``channels.deadline_missed``.
3. A call found ``in_flight`` after its lease (its maker died between the vendor call and the commit)
   is taken over: the vendor is first asked whether the call already took effect (Azure get
   operation / get subscription, GCP entitlements.get, STACKIT get subscription), so it is not made
   twice; AWS ``BatchMeterUsage`` has no such read and is idempotent by usage record, so it is made
   again (the vendor counts it once).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from services.intake.domain.fulfilment import (
    FulfilmentOptions,
    VendorCall,
    calls_for_event,
    calls_for_rejection,
)
from services.intake.vendors import store
from services.intake.vendors.clients import FulfilmentClient
from services.intake.vendors.http import VendorRefused
from services.intake.vendors.metrics import DEADLINES_MISSED, VENDOR_CALLS
from shared.contracts import events as ev
from shared.contracts.envelope import derived_id, make_event
from shared.db.uow import Database, UnitOfWork
from shared.messaging import topics
from shared.messaging.faults import faults
from shared.messaging.incoming import Incoming

log = logging.getLogger("som.intake.fulfilment")
SERVICE = "intake"
SOURCE = "som/intake/fulfilment"
CRASH_POINT = "crash_after_vendor_call"


class SimulatedCrash(BaseException):
    """Raised at the fault point between a vendor call and its commit (tests): nothing is recorded."""


def _approval_deadline(snapshot: Mapping[str, Any] | None) -> datetime | None:
    """STACKIT: ``orderedAt`` + ``approvalTimeout`` (seconds, ``3600s``); None when either is unknown."""
    if not snapshot:
        return None
    ordered, timeout = snapshot.get("orderedAt"), str(snapshot.get("approvalTimeout") or "")
    if not isinstance(ordered, str) or not timeout.rstrip("s").isdigit():
        return None
    start = datetime.fromisoformat(ordered.replace("Z", "+00:00")).astimezone(UTC)
    return start + timedelta(seconds=int(timeout.rstrip("s")))


class FulfilmentHandlers:
    """Handlers of the lifecycle's topics that record vendor calls for the enabled channels."""

    def __init__(self, channels: set[str] | frozenset[str], options: FulfilmentOptions | None = None) -> None:
        self.channels = frozenset(channels)
        self.options = options or FulfilmentOptions()

    def skips(self, _incoming: Incoming) -> bool:
        """With no channel's vendor calls enabled, every lifecycle event is left untouched."""
        return not self.channels

    async def _deadline(self, uow: UnitOfWork, channel: str, csid: str) -> datetime | None:
        if channel != "stackit_marketplace":
            return None
        return _approval_deadline(await store.stackit_snapshot(uow.conn, uow.namespace, csid))

    async def on_state_changed(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """A lifecycle change: record the vendor calls it asks for."""
        if not self.channels:
            return
        data = incoming.cloud_event().data
        snapshot = data.get("snapshot") or {}
        channel = str(snapshot.get("channel") or "")
        if channel not in self.channels:
            return
        sid = str(data.get("subscription_id") or "")
        csid = await store.channel_subscription(uow.conn, channel, sid)
        if csid is None:
            return
        origin = await store.origin(uow.conn, channel, sid)
        deadline = await self._deadline(uow, channel, csid)
        calls: list[VendorCall] = []
        for event in data.get("events") or []:
            key = str(event.get("idempotency_key") or "")
            prefix = f"{channel}:"
            order = (
                await store.order(uow.conn, channel, key[len(prefix) :]) if key.startswith(prefix) else None
            )
            calls += calls_for_event(
                channel,
                subscription_id=sid,
                channel_subscription_id=csid,
                event=event,
                snapshot=snapshot,
                order=order,
                origin=origin,
                options=self.options,
                approval_deadline=deadline,
            )
        if calls:
            recorded = await store.record_calls(uow.conn, uow.namespace, calls)
            log.info("%s %s: %d vendor call(s) recorded", channel, sid, recorded)

    async def on_command_rejected(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """A command the lifecycle refused: a channel's request is declined at the vendor."""
        if not self.channels:
            return
        data = incoming.cloud_event().data
        channel, _, order_key = str(data.get("idempotency_key") or "").partition(":")
        if channel not in self.channels or not order_key:
            return
        order = await store.order(uow.conn, channel, order_key)
        if order is None:
            return
        sid = str(data.get("subscription_id") or "")
        csid = str(order.get("channel_subscription_id") or "")
        calls = calls_for_rejection(
            channel,
            subscription_id=sid,
            channel_subscription_id=csid,
            rejection=data,
            order=order,
            options=self.options,
            approval_deadline=await self._deadline(uow, channel, csid),
        )
        if calls:
            await store.record_calls(uow.conn, uow.namespace, calls)


class FulfilmentDelivery:
    """Makes the recorded vendor calls; one acknowledgement per operation."""

    def __init__(
        self,
        db: Database,
        clients: Mapping[str, FulfilmentClient],
        *,
        poll_seconds: float = 1.0,
        lease_seconds: float = 60.0,
        retry_seconds: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.clients = dict(clients)
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.retry_seconds = retry_seconds or (1.0,)
        self.clock = clock

    async def run_forever(self) -> None:
        """Deliver due calls every ``poll_seconds`` until cancelled (the intake worker's background task)."""
        try:
            while True:
                try:
                    await self.deliver_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database is away: the calls wait in their table
                    log.warning("vendor call delivery failed: %s", type(exc).__name__)
                await asyncio.sleep(self.poll_seconds)
        finally:
            for client in self.clients.values():
                await client.aclose()

    async def deliver_once(self) -> list[tuple[VendorCall, str]]:
        """Claim and make every due call; returns each call with its outcome."""
        rows = await store.claim_due(self.db.pool, self.db.namespace, lease_seconds=self.lease_seconds)
        done: list[tuple[VendorCall, str]] = []
        for row in rows:
            call = store.as_call(row)
            outcome = await self._deliver(row, call)
            VENDOR_CALLS.labels(call.channel, call.action, outcome).inc()
            done.append((call, outcome))
        return done

    async def _deliver(self, row: Any, call: VendorCall) -> str:
        client = self.clients.get(call.channel)
        if client is None:
            await store.finish(self.db.pool, row["id"], "failed", error="no client for the channel")
            return "failed"
        if call.deadline is not None and self.clock() > call.deadline:
            await self._missed(row, call)
            return "deadline_missed"
        try:
            if row["was"] == "in_flight" or row["attempts"] > 1:
                # a previous attempt may have reached the vendor: do not answer twice
                if await client.confirm(call):
                    await store.finish(self.db.pool, row["id"], "acked", response={"confirmed": True})
                    return "confirmed"
            response = await client.perform(call)
        except VendorRefused as exc:
            log.warning("%s %s %s refused: HTTP %s", call.channel, call.action, call.operation_id, exc.status)
            await store.finish(self.db.pool, row["id"], "failed", error=f"{exc}: {exc.body[:200]}")
            return "refused"
        except Exception as exc:  # transient: timeouts, 5xx after the client's own retries, anything unknown
            pause = self.retry_seconds[min(int(row["attempts"]) - 1, len(self.retry_seconds) - 1)]
            retry_at = self.clock() + timedelta(seconds=pause)
            await store.finish(self.db.pool, row["id"], "pending", error=str(exc)[:300], retry_at=retry_at)
            return "retry"
        if faults.fires(CRASH_POINT):
            if CRASH_POINT in os.environ.get("SOM_FAULTS", ""):
                # armed for a worker process (tests): die like a SIGKILL, no cleanup, nothing committed
                os._exit(137)
            raise SimulatedCrash(f"{call.channel} {call.action} {call.operation_id}")
        await store.finish(self.db.pool, row["id"], "acked", response=response)
        return "acked"

    async def _missed(self, row: Any, call: VendorCall) -> None:
        """Record the miss and publish ``channels.deadline_missed`` in one transaction."""
        assert call.deadline is not None
        missed = ev.VendorDeadlineMissed(
            channel=call.channel,
            operation_id=call.operation_id,
            action=call.action,
            subscription_id=call.subscription_id,
            channel_subscription_id=call.channel_subscription_id,
            deadline=call.deadline,
            detected_at=self.clock(),
            attempts=int(row["attempts"]) - 1,
            last_error=row["last_error"],
        )
        cause = derived_id("vendor-call", call.channel, call.operation_id, call.action)
        async with self.db.unit_of_work(SERVICE) as uow:
            if not await store.finish(uow.conn, row["id"], "deadline_missed", error=row["last_error"]):
                return
            uow.emit(
                topics.CHANNELS_DEADLINE_MISSED,
                make_event(
                    type=ev.VENDOR_DEADLINE_MISSED,
                    source=SOURCE,
                    subject=call.subscription_id,
                    data=missed,
                    correlation_id=cause,
                    causation_id=cause,
                ),
            )
        DEADLINES_MISSED.labels(call.channel, call.action).inc()
        log.warning("%s %s %s: vendor deadline passed", call.channel, call.action, call.operation_id)
