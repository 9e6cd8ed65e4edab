"""Lifecycle handlers: commands in, state changes (with audit rows) and events out."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from opentelemetry import trace

from shared.catalog import Catalog
from shared.contracts import events as ev
from shared.contracts.envelope import CloudEvent, make_event
from shared.db.uow import UnitOfWork
from shared.messaging import topics
from shared.messaging.runtime import Incoming
from shared.periods import add_interval

log = logging.getLogger("som.lifecycle")
SOURCE = "som/lifecycle"


def current_trace_id() -> str | None:
    """Hex trace id of the current span, for the audit trail."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class LifecycleHandlers:
    """Handlers of ``subscriptions.commands``."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def on_command(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Apply one command, once per idempotency key."""
        event = incoming.cloud_event()
        cmd = event.payload(ev.SubscriptionCommand)
        seen = await uow.conn.fetchval(
            "INSERT INTO lifecycle.command_keys (idempotency_key, subscription_id, outcome) "
            "VALUES ($1, $2, 'pending') ON CONFLICT DO NOTHING RETURNING 1",
            cmd.idempotency_key, cmd.subscription_id,
        )
        if not seen:
            log.info("command %s already applied: no second effect", cmd.idempotency_key)
            return
        row = await uow.conn.fetchrow(
            "SELECT status, version, state FROM lifecycle.subscriptions WHERE subscription_id = $1 FOR UPDATE",
            cmd.subscription_id,
        )
        if cmd.command == "create" and row is None:
            await self._create(uow, event, cmd)
            outcome = "applied"
        else:
            outcome = "rejected"
            await self._reject(uow, event, cmd, row["status"] if row else None, "NOT_ALLOWED",
                               f"{cmd.command} is not allowed in state {row['status'] if row else 'none'}")
        await uow.conn.execute(
            "UPDATE lifecycle.command_keys SET outcome = $2 WHERE idempotency_key = $1",
            cmd.idempotency_key, outcome,
        )

    async def _create(self, uow: UnitOfWork, event: CloudEvent, cmd: ev.SubscriptionCommand) -> None:
        assert cmd.plan_id and cmd.customer
        plan = self.catalog.plan(cmd.plan_id)
        interval = cmd.billing_interval or "P1M"
        status = "pending_approval" if cmd.params.get("approval") == "manual" else "active"
        start = cmd.effective_at.date()
        snapshot = ev.SubscriptionSnapshot(
            subscription_id=cmd.subscription_id,
            status=status,
            channel=cmd.channel,
            customer=cmd.customer,
            plan_id=plan.id,
            quantity=cmd.quantity or 1,
            billing_interval=interval,
            currency=cmd.currency or "USD",
            unit_amount=cmd.unit_amount,
            billing_anchor=start,
            current_period_start=start if status == "active" else None,
            current_period_end=add_interval(start, interval) if status == "active" else None,
            test=cmd.test,
        )
        await uow.conn.execute(
            "INSERT INTO lifecycle.subscriptions (subscription_id, status, version, channel, customer_id, "
            "plan_id, state) VALUES ($1, $2, 0, $3, $4, $5, $6)",
            cmd.subscription_id, status, cmd.channel, cmd.customer.customer_id, plan.id,
            snapshot.model_dump(mode="json"),
        )
        await self.record_change(uow, event, cmd, None, snapshot, change={"kind": "created"})

    async def record_change(
        self,
        uow: UnitOfWork,
        cause: CloudEvent,
        cmd: ev.SubscriptionCommand,
        from_status: str | None,
        snapshot: ev.SubscriptionSnapshot,
        *,
        change: dict[str, Any],
        effective_at: datetime | None = None,
    ) -> None:
        """Bump the version, write the audit row and emit the state change, in the caller's transaction."""
        version = await uow.conn.fetchval(
            "UPDATE lifecycle.subscriptions SET status = $2, plan_id = $3, state = $4, version = version + 1, "
            "updated_at = now() WHERE subscription_id = $1 RETURNING version",
            snapshot.subscription_id, snapshot.status, snapshot.plan_id, snapshot.model_dump(mode="json"),
        )
        when = effective_at or cmd.effective_at
        await uow.conn.execute(
            "INSERT INTO lifecycle.audit_trail (subscription_id, from_status, to_status, command, actor, reason, "
            "channel, effective_at, correlation_id, trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            snapshot.subscription_id, from_status, snapshot.status, cmd.command, cmd.actor, cmd.reason,
            snapshot.channel, when, cause.correlationid, current_trace_id(),
        )
        data = ev.SubscriptionStateChanged(
            subscription_id=snapshot.subscription_id,
            version=version,
            command=cmd.command,
            from_status=from_status,
            to_status=snapshot.status,
            effective_at=when,
            actor=cmd.actor,
            reason=cmd.reason,
            change=change,
            snapshot=snapshot,
        )
        uow.emit(
            topics.SUBSCRIPTIONS_EVENTS,
            make_event(
                type=ev.SUBSCRIPTION_STATE_CHANGED,
                source=SOURCE,
                subject=snapshot.subscription_id,
                data=data,
                correlation_id=cause.correlationid,
                causation_id=cause.id,
                discriminator=str(version),
            ),
        )

    async def _reject(
        self, uow: UnitOfWork, cause: CloudEvent, cmd: ev.SubscriptionCommand, status: str | None,
        code: str, message: str,
    ) -> None:
        data = ev.SubscriptionCommandRejected(
            subscription_id=cmd.subscription_id,
            command=cmd.command,
            idempotency_key=cmd.idempotency_key,
            status=status,
            reason_code=code,
            message=message,
        )
        log.info("command rejected: %s", json.dumps(data.model_dump(mode="json")))
        uow.emit(
            topics.SUBSCRIPTIONS_COMMAND_REJECTIONS,
            make_event(
                type=ev.SUBSCRIPTION_COMMAND_REJECTED,
                source=SOURCE,
                subject=cmd.subscription_id,
                data=data,
                correlation_id=cause.correlationid,
                causation_id=cause.id,
            ),
        )
