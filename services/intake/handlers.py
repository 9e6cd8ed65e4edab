"""Intake handlers: channel payload in, canonical subscription command or rejection out.

The business rules live in ``services.intake.domain``; this module reads and writes
Postgres through the unit of work and emits events through the outbox.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared.catalog import Catalog
from shared.contracts import events as ev
from shared.contracts.canonical import CanonicalOrderChange, NormalizedPayload
from shared.contracts.envelope import derived_id, make_event
from shared.db.uow import UnitOfWork
from shared.messaging import topics
from shared.messaging.errors import PermanentError
from shared.messaging.runtime import Incoming, content_id

log = logging.getLogger("som.intake")
SOURCE = "som/intake"
TEST_CLOCK_HEADER = "som-test-clock"

# Canonical (action, phase) -> lifecycle command and its params. ``None`` = recorded, no command.
_COMMANDS: dict[tuple[str, str], tuple[str, dict[str, Any]] | None] = {
    ("create", "effective"): ("create", {}),
    ("create", "requested"): ("create", {"awaiting_channel_activation": True}),
    ("create", "scheduled"): ("create", {}),
    ("activate", "effective"): ("approve", {}),
    ("activate", "requested"): ("approve", {}),
    ("change_plan", "effective"): ("change_plan", {"timing": "immediate"}),
    ("change_plan", "scheduled"): ("change_plan", {"timing": "period_end"}),
    ("change_plan", "requested"): ("change_plan", {"timing": "immediate"}),
    ("change_quantity", "effective"): ("change_quantity", {"timing": "immediate"}),
    ("change_quantity", "scheduled"): ("change_quantity", {"timing": "period_end"}),
    ("change_quantity", "requested"): ("change_quantity", {"timing": "immediate"}),
    ("suspend", "effective"): ("suspend", {}),
    ("reinstate", "effective"): ("reactivate", {}),
    ("cancel", "effective"): ("cancel", {"timing": "immediate"}),
    ("cancel", "scheduled"): ("cancel", {"timing": "end_of_term"}),
    ("cancel", "requested"): ("cancel", {"timing": "end_of_term"}),
    ("cancel", "withdrawn"): ("undo_scheduled_change", {"what": "cancellation"}),
    ("uncancel", "effective"): ("undo_scheduled_change", {"what": "cancellation"}),
    ("renew", "effective"): ("renew", {}),
    ("create_failed", "failed"): ("reject", {"reason": "channel provisioning failed"}),
    ("refresh", "effective"): None,
}


def transport_from_headers(headers: dict[str, str]) -> dict[str, Any]:
    """Rebuild the channel's out-of-band context: ``http.<Name>`` headers and ``poll.<field>`` values."""
    transport: dict[str, Any] = {}
    http = {k[5:]: v for k, v in headers.items() if k.startswith("http.")}
    if http:
        transport["headers"] = http
    for k, v in headers.items():
        if k.startswith("poll."):
            transport[k[5:]] = json.loads(v) if v[:1] in "{[\"" or v in ("null", "true", "false") else v
    return transport


def parse_effective_at(value: str | None, fallback_ms: int) -> datetime:
    """Effective time of the change; the record's timestamp when the channel does not carry one."""
    if value:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return datetime.fromtimestamp(fallback_ms / 1000, UTC)


class IntakeHandlers:
    """Handlers of the ``orders.inbound.<channel>`` topics."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def on_inbound(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Normalize, validate and route one channel payload."""
        from services.intake.domain import errors as intake_errors
        from services.intake.domain.normalizers import normalize, region_hint

        channel = incoming.topic.removeprefix(topics.INBOUND_PREFIX)
        transport = transport_from_headers(incoming.headers)
        try:
            normalized: NormalizedPayload = normalize(channel, incoming.value, transport, catalog=self.catalog)
        except intake_errors.UnparseableInput as exc:
            raise PermanentError(str(exc), code=getattr(exc, "reason_code", "UNPARSEABLE")) from exc
        except intake_errors.InvalidOrder as exc:
            await self._reject(uow, incoming, channel, None, list(exc.reasons), None, None)
            return
        if normalized.disposition != "apply":
            log.info("dropped %s payload: %s (%s)", channel, normalized.disposition, normalized.drop_reason)
            await uow.conn.execute(
                "INSERT INTO intake.dropped (channel, disposition, reason) VALUES ($1, $2, $3)",
                channel, normalized.disposition, normalized.drop_reason,
            )
            return
        region = region_hint(channel, incoming.value, transport) or incoming.headers.get("region")
        for index, change in enumerate(normalized.changes):
            await self._apply(uow, incoming, channel, change, index, region)

    async def _apply(
        self,
        uow: UnitOfWork,
        incoming: Incoming,
        channel: str,
        change: CanonicalOrderChange,
        index: int,
        region: str | None,
    ) -> None:
        from services.intake.domain.mapping import resolve_plan
        from services.intake.domain.policy import effective_policy
        from services.intake.domain.pricing import order_value
        from services.intake.domain.validation import CustomerCredit, validate

        order_key = change.channel_event_id or f"{content_id(incoming)}:{index}"
        if await uow.conn.fetchval(
            "SELECT 1 FROM intake.orders WHERE channel = $1 AND order_key = $2", channel, order_key
        ):
            log.info("order %s/%s seen before: no second effect", channel, order_key)
            return
        policy = effective_policy(channel, change.account.channel_account_id)
        plan_id = resolve_plan(channel, change)
        customer_id = await self._customer_id(uow, channel, change)
        credit_row = await uow.conn.fetchrow(
            "SELECT credit_hold, credit_limit, currency, country, tax_exempt FROM intake.customers "
            "WHERE customer_id = $1",
            customer_id,
        )
        credit = (
            CustomerCredit(
                customer_id=customer_id,
                credit_hold=credit_row["credit_hold"],
                credit_limit=credit_row["credit_limit"],
                currency=credit_row["currency"],
            )
            if credit_row
            else None
        )
        value = order_value(change, self.catalog, plan_id)
        reasons = validate(
            change,
            catalog=self.catalog,
            plan_id=plan_id,
            customer=credit,
            policy=policy,
            region=region,
            order_value=value,
        )
        if reasons:
            await self._reject(uow, incoming, channel, change, reasons, value, policy)
            return
        subscription_id = await self._subscription_id(uow, channel, change)
        await uow.conn.execute(
            "INSERT INTO intake.orders (channel, order_key, subscription_id, action, canonical) "
            "VALUES ($1, $2, $3, $4, $5)",
            channel, order_key, subscription_id, change.action, change.model_dump(mode="json"),
        )
        mapped = _COMMANDS.get((change.action, change.phase))
        if mapped is None:
            return
        command, params = mapped
        params = dict(params)
        if change.replaces_channel_subscription_id:
            params["replaces_channel_subscription_id"] = change.replaces_channel_subscription_id
        if policy.approval == "manual":
            params["approval"] = "manual"
        if incoming.headers.get(TEST_CLOCK_HEADER):
            # Test mode: the subscription lives on a named test clock (som clock / som simulate).
            params["clock"] = incoming.headers[TEST_CLOCK_HEADER]
        plan = self.catalog.find(plan_id) if plan_id else None
        currency = change.currency or (sorted(plan.currencies)[0] if plan and "USD" not in plan.currencies else "USD")
        cmd = ev.SubscriptionCommand(
            command=command,
            subscription_id=subscription_id,
            idempotency_key=f"{channel}:{order_key}",
            channel=channel,
            channel_subscription_id=change.channel_subscription_id,
            customer=ev.Customer(
                customer_id=customer_id,
                email=change.customer.email,
                name=change.customer.name,
                country=(credit_row["country"] if credit_row else None) or incoming.headers.get("country"),
                region=region,
                account_id=change.account.channel_account_id,
                tax_exempt=bool(credit_row["tax_exempt"]) if credit_row else False,
            ),
            plan_id=plan_id,
            quantity=change.quantity,
            billing_interval=change.billing_interval,
            currency=currency,
            # A price the channel charged is the subscription's price; the direct channel's comes from
            # the catalog, so it stays unset and catalog price versions apply at renewal.
            unit_amount=Decimal(change.unit_amount)
            if change.unit_amount and change.currency and channel != "direct" else None,
            effective_at=parse_effective_at(change.effective_at, incoming.timestamp_ms),
            trial=bool(change.trial),
            test=change.test,
            actor=f"channel:{channel}",
            params=params,
        )
        correlation = derived_id("order", channel, order_key)
        uow.emit(
            topics.SUBSCRIPTIONS_COMMANDS,
            make_event(
                type=ev.SUBSCRIPTION_COMMAND,
                source=SOURCE,
                subject=subscription_id,
                data=cmd,
                correlation_id=correlation,
                causation_id=correlation,
            ),
        )

    async def _customer_id(self, uow: UnitOfWork, channel: str, change: CanonicalOrderChange) -> str:
        ext = change.customer.channel_customer_id or change.account.channel_account_id or "anonymous"
        customer_id = derived_id("customer", channel, ext)
        await uow.conn.execute(
            "INSERT INTO intake.customers (customer_id, channel, channel_customer_id, email, name) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id) DO UPDATE SET "
            "email = COALESCE(EXCLUDED.email, intake.customers.email), "
            "name = COALESCE(EXCLUDED.name, intake.customers.name)",
            customer_id, channel, ext, change.customer.email, change.customer.name,
        )
        return customer_id

    async def _subscription_id(self, uow: UnitOfWork, channel: str, change: CanonicalOrderChange) -> str:
        """Internal id for the channel subscription; a replacing id inherits the replaced one's."""
        existing = await uow.conn.fetchval(
            "SELECT subscription_id FROM intake.channel_subscriptions "
            "WHERE channel = $1 AND channel_subscription_id = $2",
            channel, change.channel_subscription_id,
        )
        if existing:
            return str(existing)
        subscription_id: str | None = None
        if change.replaces_channel_subscription_id:
            subscription_id = await uow.conn.fetchval(
                "UPDATE intake.channel_subscriptions SET replaced_by = $3 "
                "WHERE channel = $1 AND channel_subscription_id = $2 RETURNING subscription_id",
                channel, change.replaces_channel_subscription_id, change.channel_subscription_id,
            )
        if subscription_id is None:
            subscription_id = derived_id("subscription", channel, change.channel_subscription_id)
        await uow.conn.execute(
            "INSERT INTO intake.channel_subscriptions (channel, channel_subscription_id, subscription_id) "
            "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            channel, change.channel_subscription_id, subscription_id,
        )
        return subscription_id

    async def _reject(
        self,
        uow: UnitOfWork,
        incoming: Incoming,
        channel: str,
        change: CanonicalOrderChange | None,
        reasons: list[Any],
        value: Decimal | None,
        policy: Any,
    ) -> None:
        from services.intake.domain.policy import effective_policy
        from services.intake.domain.impact import impact_score

        if policy is None:
            policy = effective_policy(channel, change.account.channel_account_id if change else None)
        impact = impact_score(value, policy.impact_weight)
        rejected = ev.OrderRejected(
            channel=channel,
            channel_subscription_id=change.channel_subscription_id if change else None,
            channel_event_id=change.channel_event_id if change else None,
            reasons=[ev.RejectionReasonData(code=r.code, field=r.field, message=r.message) for r in reasons],
            impact_score=impact,
            order_value=value,
            currency=change.currency if change else None,
            received_at=datetime.fromtimestamp(incoming.timestamp_ms / 1000, UTC),
        )
        await uow.conn.execute(
            "INSERT INTO intake.rejections (channel, channel_subscription_id, channel_event_id, reasons, "
            "impact_score, order_value, currency) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            channel, rejected.channel_subscription_id, rejected.channel_event_id,
            [r.model_dump() for r in rejected.reasons], impact, value, rejected.currency,
        )
        correlation = derived_id("order", channel, content_id(incoming))
        uow.emit(
            topics.ORDERS_REJECTED,
            make_event(
                type=ev.ORDER_REJECTED,
                source=SOURCE,
                subject=rejected.channel_subscription_id,
                data=rejected,
                correlation_id=correlation,
                causation_id=correlation,
            ),
            key=rejected.channel_subscription_id or channel,
        )
