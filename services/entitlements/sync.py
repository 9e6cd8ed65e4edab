"""Acknowledged sync with provisioning: acknowledgements, instance reports against the allowance, and
re-publication of what stays unacknowledged longer than the configured time."""

from __future__ import annotations

import asyncio
import logging
from datetime import date

from services.entitlements import metrics
from services.entitlements.domain.usage import crossed, period_start
from services.entitlements.store import PgEntitlementStore, PgSyncStore, PgUsageStore
from shared.catalog import Catalog
from shared.contracts import events as ev
from shared.contracts.envelope import caused_by, derived_id, make_event
from shared.db.uow import Database, UnitOfWork
from shared.messaging import topics
from shared.messaging.errors import is_outage
from shared.messaging.runtime import Incoming

log = logging.getLogger("som.entitlements.sync")
NEVER_RESETS = date(1970, 1, 1)  # the counting "period" of a limit that is not metered
SOURCE = "som/entitlements"


class SyncHandlers:
    """Handlers of ``entitlements.applied``, ``provisioning.instances`` and ``usage.reported``."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog
        self.sync = PgSyncStore()
        self.sets = PgEntitlementStore()
        self.usage = PgUsageStore()

    async def on_applied(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Record what provisioning applied: a version of a set, or an instruction."""
        event = incoming.cloud_event()
        ack: ev.EntitlementsApplied = event.payload(ev.EntitlementsApplied)
        if ack.version is not None:
            await self.sync.ack_version(uow.conn, ack.subscription_id, ack.version)
        if ack.instruction_id is not None:
            await self.sync.ack_instruction(uow.conn, ack.instruction_id)

    async def on_usage(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Count a usage report (once per ``usage_id``) against the period's limit; raise 80 % and 100 %."""
        event = incoming.cloud_event()
        report: ev.UsageReported = event.payload(ev.UsageReported)
        if self.catalog is None or not await self.usage.record_report(uow.conn, report):
            return
        definition = self.catalog.feature(report.feature, numeric=True)
        billing_start = None
        if report.subscription_id is not None:
            subs = await self.sets.subscriptions_of(uow.conn, report.customer_id)
            known = subs.get(report.subscription_id)
            billing_start = known.inputs.current_period_start if known and known.inputs else None
        start = (
            period_start(definition.period, report.occurred_at, billing_start)
            if definition.kind == "metered"
            else NEVER_RESETS
        )
        used, raised = await self.usage.add(
            uow.conn, report.customer_id, report.feature, start, report.quantity
        )
        limit = await self.usage.customer_limit(uow.conn, report.customer_id, report.feature)
        reached = crossed(used, limit, raised)
        if not reached:
            return
        await self.usage.mark_raised(uow.conn, report.customer_id, report.feature, start, reached)
        for threshold in reached:
            uow.emit(
                topics.ENTITLEMENTS_USAGE,
                caused_by(
                    event,
                    type=ev.USAGE_THRESHOLD_REACHED,
                    source=SOURCE,
                    subject=report.customer_id,
                    data=ev.UsageThresholdReached(
                        customer_id=report.customer_id,
                        feature=report.feature,
                        period_start=start,
                        threshold=threshold,
                        used=used,
                        limit=limit,
                    ),
                    discriminator=str(threshold),
                ),
            )

    async def on_instance_report(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Keep the instance's status; more running than the set allows raises ``entitlements.violation``."""
        event = incoming.cloud_event()
        report: ev.InstanceReported = event.payload(ev.InstanceReported)
        await self.sync.record_instance(
            uow.conn, report.subscription_id, report.instance_id, report.status, report.reported_at
        )
        customer = await self.sets.customer_of(uow.conn, report.subscription_id)
        if customer is None:
            return  # no set yet: nothing to hold it against
        record = (await self.sets.subscriptions_of(uow.conn, customer)).get(report.subscription_id)
        if record is None:
            return
        running = await self.sync.running_instances(uow.conn, report.subscription_id)
        allowed = int(record.body.get("instances", 0))
        if len(running) <= allowed:
            return
        metrics.VIOLATIONS.inc()
        uow.emit(
            topics.ENTITLEMENTS_VIOLATION,
            caused_by(
                event,
                type=ev.ENTITLEMENTS_VIOLATION,
                source=SOURCE,
                subject=report.subscription_id,
                data=ev.EntitlementViolation(
                    subscription_id=report.subscription_id,
                    customer_id=customer,
                    allowed=allowed,
                    running=len(running),
                    instance_ids=running,
                    detected_at=report.reported_at,
                ),
            ),
        )


async def republish_once(db: Database, service: str, timeout_seconds: float) -> int:
    """Publish again every set and instruction unacknowledged for ``timeout_seconds``; returns how many."""
    sync = PgSyncStore()
    async with db.unit_of_work(service) as uow:
        sets, instructions = await sync.claim_unacknowledged(uow.conn, timeout_seconds)
        for row in sets:
            body = dict(row["body"])
            cause = derived_id(
                "republish", row["subscription_id"], str(row["version"]), str(row["republished"])
            )
            data = ev.EntitlementsChanged.model_validate(
                {
                    **body,
                    "subscription_id": row["subscription_id"],
                    "version": row["version"],
                    "previous_version": row["version"] - 1,
                    "effective_at": row["updated_at"],
                }
            )
            uow.emit(
                topics.ENTITLEMENTS_CHANGED,
                make_event(
                    type=ev.ENTITLEMENTS_CHANGED,
                    source=SOURCE,
                    subject=row["subscription_id"],
                    data=data,
                    correlation_id=cause,
                    causation_id=cause,
                ),
            )
        for row in instructions:
            cause = derived_id("republish", row["instruction_id"], str(row["republished"]))
            uow.emit(
                topics.ENTITLEMENTS_INSTRUCTIONS,
                make_event(
                    type=ev.ENTITLEMENTS_INSTRUCTION,
                    source=SOURCE,
                    subject=row["subscription_id"],
                    data=ev.EntitlementInstruction(
                        instruction_id=row["instruction_id"],
                        kind=row["kind"],
                        subscription_id=row["subscription_id"],
                        customer_id=row["customer_id"],
                        effective_at=row["effective_at"],
                    ),
                    correlation_id=cause,
                    causation_id=cause,
                ),
            )
        sets_open, instructions_open, oldest = await sync.unacknowledged(uow.conn)
    metrics.REPUBLISHED.labels("set").inc(len(sets))
    metrics.REPUBLISHED.labels("instruction").inc(len(instructions))
    metrics.UNACKNOWLEDGED.labels("set").set(sets_open)
    metrics.UNACKNOWLEDGED.labels("instruction").set(instructions_open)
    metrics.ACK_LAG_SECONDS.set(oldest)
    return len(sets) + len(instructions)


async def run_republisher(db: Database, service: str, timeout_seconds: float) -> None:
    """Re-publish unacknowledged changes forever (a background task of the worker)."""
    poll = max(0.1, min(timeout_seconds / 2, 5.0))
    while True:
        try:
            await republish_once(db, service, timeout_seconds)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_outage(exc):
                log.exception("re-publication pass failed")
        await asyncio.sleep(poll)
