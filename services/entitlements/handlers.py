"""Entitlement handlers: every lifecycle change re-derives the full entitlement set."""

from __future__ import annotations

import logging
import time
from typing import Any

from services.entitlements import metrics
from services.entitlements.domain.entitlements import entitlements_for
from services.entitlements.store import EntitlementStore, PgEntitlementStore
from shared.catalog import Catalog
from shared.contracts import events as ev
from shared.contracts.envelope import caused_by
from shared.db.uow import UnitOfWork
from shared.messaging import topics
from shared.messaging.runtime import Incoming

log = logging.getLogger("som.entitlements")
SOURCE = "som/entitlements"


class EntitlementHandlers:
    """Handlers of ``subscriptions.events``."""

    def __init__(self, catalog: Catalog, store: EntitlementStore | None = None) -> None:
        self.catalog = catalog
        self.store: EntitlementStore = store or PgEntitlementStore()

    async def on_subscription_event(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Publish the new entitlement set when it differs from the last one."""
        event = incoming.cloud_event()
        if event.type != ev.SUBSCRIPTION_STATE_CHANGED:
            return
        change: ev.SubscriptionStateChanged = event.payload(ev.SubscriptionStateChanged)
        # Wall time against the broker's timestamp (never business time: test clocks jump).
        metrics.SYNC_LAG.set(max(0.0, time.time() - incoming.timestamp_ms / 1000))
        snap = change.snapshot
        current = await self.store.load(uow.conn, change.subscription_id)
        if current and current.lifecycle_version >= change.version:
            log.info("stale lifecycle version %d for %s ignored", change.version, change.subscription_id)
            return
        ent = entitlements_for(
            self.catalog,
            plan_id=snap.plan_id,
            quantity=snap.quantity,
            addons=[(a.plan_id, a.quantity) for a in snap.addons],
            status=snap.status,
        )
        body: dict[str, Any] = {
            "status": snap.status,
            "plan_id": snap.plan_id,
            "features": list(ent.features),
            "limits": ent.limits,
            "instances": ent.instances,
            "can_create_instances": ent.can_create_instances,
        }
        if current and current.body == body:
            await self.store.touch(uow.conn, change.subscription_id, change.version)
            return
        version = (current.version + 1) if current else 1
        await self.store.save(uow.conn, change.subscription_id, version, change.version, body)
        data = ev.EntitlementsChanged(
            subscription_id=change.subscription_id,
            version=version,
            effective_at=change.effective_at,
            **body,
        )
        uow.emit(
            topics.ENTITLEMENTS_CHANGED,
            caused_by(
                event,
                type=ev.ENTITLEMENTS_CHANGED,
                source=SOURCE,
                subject=change.subscription_id,
                data=data,
                discriminator=str(version),
                time=change.effective_at,
            ),
        )
