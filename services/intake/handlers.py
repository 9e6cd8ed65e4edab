"""Intake handlers: channel payload in, canonical subscription command or rejection out.

The business rules live in ``services.intake.domain`` and are strung together, without I/O,
in ``services.intake.pipeline``; this module reads and writes Postgres through the unit of
work and emits events through the outbox.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from services.intake.domain import errors as intake_errors
from services.intake.domain.impact import impact_score
from services.intake.domain.normalizers import normalize, region_hint
from services.intake.domain.policy import effective_policy
from services.intake.domain.snapshots import KNOWN_KEY
from services.intake.domain.validation import CustomerCredit
from services.intake.pipeline import (
    COMMAND_REASONS,
    ChannelAuth,
    azure_webhook_operation,
    check_signature,
    evaluate,
    operation_finding,
    sns_envelope,
)
from services.intake.sns_certs import SnsCertificates
from services.intake.store import CustomerSighting, IntakeStore, PgIntakeStore, SubscriptionMapping
from services.intake.vendors.http import VendorRefused
from services.intake.vendors.lookups import VendorLookups
from shared.catalog import Catalog
from shared.contracts import events as ev
from shared.contracts.canonical import CanonicalOrderChange, NormalizedPayload, RejectionReason
from shared.contracts.commands import CommandParams, CreateParams, UndoScheduledChangeParams
from shared.contracts.envelope import derived_id, make_event
from shared.db.uow import UnitOfWork
from shared.messaging import topics
from shared.messaging.errors import PermanentError, TransientError
from shared.messaging.runtime import Incoming, content_id

log = logging.getLogger("som.intake")
SOURCE = "som/intake"
TEST_CLOCK_HEADER = "som-test-clock"


def transport_from_headers(headers: dict[str, str]) -> dict[str, Any]:
    """Rebuild the channel's out-of-band context: ``http.<Name>`` headers and ``poll.<field>`` values."""
    transport: dict[str, Any] = {}
    http = {k[5:]: v for k, v in headers.items() if k.startswith("http.")}
    if http:
        transport["headers"] = http
    for k, v in headers.items():
        if k.startswith("poll."):
            transport[k[5:]] = json.loads(v) if v[:1] in '{["' or v in ("null", "true", "false") else v
    return transport


def inbound_event_id(incoming: Incoming) -> str:
    """Inbox key of a channel payload: a hash of topic and bytes, plus the poll context if any.

    A polled snapshot (STACKIT) can come back with the very same bytes after another state
    (ACTIVE -> INACTIVE -> ACTIVE): its ``poll.*`` headers (the previous state) tell the two
    observations apart, while a redelivery of one publication keeps the same key.
    """
    poll = sorted((k, v) for k, v in incoming.headers.items() if k.startswith("poll.") and k != "poll.poll")
    if not poll:
        return content_id(incoming)
    digest = hashlib.sha256(incoming.topic.encode() + b"\0" + incoming.value)
    digest.update(json.dumps(poll).encode())
    return digest.hexdigest()


def parse_effective_at(value: str | None, fallback_ms: int) -> datetime:
    """Effective time of the change; the record's timestamp when the channel does not carry one."""
    if value:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return datetime.fromtimestamp(fallback_ms / 1000, UTC)


class AzureOperations(Protocol):
    """What the Azure authenticity check needs of the SaaS Fulfillment client."""

    async def get_operation(self, subscription_id: str, operation_id: str) -> dict[str, Any]:
        """``GET /api/saas/subscriptions/{id}/operations/{operationId}``; 404 raises ``VendorRefused``."""
        ...


class IntakeHandlers:
    """Handlers of the ``orders.inbound.<channel>`` topics."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        secrets: Mapping[str, Sequence[str]] | None = None,
        store: IntakeStore | None = None,
        auth: ChannelAuth | None = None,
        sns_certificates: SnsCertificates | None = None,
        lookups: VendorLookups | None = None,
        azure_operations: AzureOperations | None = None,
    ) -> None:
        self.catalog = catalog
        self.lookups = lookups
        # set: an Azure webhook is acted on only once Azure confirms its operation (get operation)
        self.azure_operations = azure_operations
        hmac_secrets = {k: list(v) for k, v in (secrets or {}).items() if v}
        self.auth = (
            replace(auth, secrets={**auth.secrets, **hmac_secrets}) if auth else ChannelAuth(hmac_secrets)
        )
        self.sns_certificates = sns_certificates or SnsCertificates(dict(self.auth.sns_certificates))
        self.store: IntakeStore = store or PgIntakeStore()

    async def on_inbound(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Verify, normalize, validate and route one channel payload."""
        channel = incoming.topic.removeprefix(topics.INBOUND_PREFIX)
        transport = transport_from_headers(incoming.headers)
        # Before anything else: a forged payload must not even be parsed into an order. The
        # receipt time is the record's timestamp, so a replay of the topic decides the same.
        auth = self.auth
        envelope = sns_envelope(channel, incoming.value) if auth.sns else None
        url = envelope.get("SigningCertURL") if envelope else None
        if isinstance(url, str) and url not in auth.sns_certificates:
            auth = auth.with_certificate(url, await self.sns_certificates.get(url))  # fetched once, cached
        finding = check_signature(channel, incoming.value, transport, auth, now=incoming.timestamp_ms / 1000)
        if finding is None and self.azure_operations is not None:
            finding = await self._azure_operation_check(channel, incoming.value)
        if finding is not None:
            log.warning("%s payload refused: %s", channel, finding.code)
            await self._reject(uow, incoming, channel, None, [finding], None, None)
            return
        try:
            normalized: NormalizedPayload = normalize(
                channel, incoming.value, transport, catalog=self.catalog
            )
        except intake_errors.UnparseableInput as exc:
            raise PermanentError(str(exc), code=getattr(exc, "reason_code", "UNPARSEABLE")) from exc
        except intake_errors.InvalidOrder as exc:
            await self._reject(uow, incoming, channel, None, list(exc.reasons), None, None)
            return
        normalized = await self._with_known_state(uow, channel, incoming.value, transport, normalized)
        if normalized.disposition != "apply":
            log.info("dropped %s payload: %s (%s)", channel, normalized.disposition, normalized.drop_reason)
            await self.store.record_dropped(uow.conn, channel, normalized.disposition, normalized.drop_reason)
            return
        region = region_hint(channel, incoming.value, transport) or incoming.headers.get("region")
        for index, change in enumerate(normalized.changes):
            if self.lookups is not None:  # the vendor fills what the event leaves out (plan, quantity)
                change = await self.lookups.enrich(channel, change, inbound_event_id(incoming), transport)
            await self._apply(uow, incoming, channel, change, index, region)

    async def _azure_operation_check(self, channel: str, body: bytes) -> RejectionReason | None:
        """Azure's documented alternative to the webhook JWT: the operation must exist at Azure.

        404 means Azure never issued it: ``SIGNATURE_INVALID``. A timeout or 5xx is transient (the
        runtime retries the message); another refusal (401/403: our credential) is too, since the
        payload may be genuine and must not be dropped for it.
        """
        assert self.azure_operations is not None
        ids = azure_webhook_operation(channel, body)
        if ids is None:
            return None
        subscription_id, operation_id = ids
        if not operation_id:
            return operation_finding("", None)
        try:
            operation: dict[str, Any] | None = await self.azure_operations.get_operation(
                subscription_id, operation_id
            )
        except VendorRefused as exc:
            if exc.status != 404:
                raise TransientError(f"Azure get operation refused: HTTP {exc.status}") from exc
            operation = None
        return operation_finding(subscription_id, operation)

    async def _with_known_state(
        self,
        uow: UnitOfWork,
        channel: str,
        body: bytes,
        transport: dict[str, Any],
        normalized: NormalizedPayload,
    ) -> NormalizedPayload:
        """A snapshot normalized again with what intake already knows of it (8a rule 9).

        A snapshot (no event id; create, activate or refresh) means create, activate or refresh
        depending on whether and how the subscription was seen before: the normalizer decides
        that purely from ``transport["known_subscription"]``, read here from the intake store.
        """
        if KNOWN_KEY in transport or len(normalized.changes) != 1:
            return normalized
        change = normalized.changes[0]
        if change.channel_event_id is not None or change.action not in ("create", "activate", "refresh"):
            return normalized
        known = await self.store.known_subscription(uow.conn, channel, change.channel_subscription_id)
        return normalize(channel, body, {**transport, KNOWN_KEY: known}, catalog=self.catalog)

    async def _apply(
        self,
        uow: UnitOfWork,
        incoming: Incoming,
        channel: str,
        change: CanonicalOrderChange,
        index: int,
        region: str | None,
    ) -> None:
        order_key = change.channel_event_id or f"{inbound_event_id(incoming)}:{index}"
        # The previous change of the same payload recorded its order as a queued write: make it
        # visible before this one looks for orders (a payload may name one order twice).
        await uow.flush_writes()
        ext = change.customer.channel_customer_id or change.account.channel_account_id or "anonymous"
        customer_id = derived_id("customer", channel, ext)
        context = await self.store.order_context(
            uow.conn,
            channel,
            order_key,
            customer=CustomerSighting(customer_id, ext, change.customer.email, change.customer.name),
            channel_subscription_id=change.channel_subscription_id,
        )
        if context is None:
            log.info("order %s/%s seen before: no second effect", channel, order_key)
            return
        standing = context.standing
        credit = CustomerCredit(
            customer_id=customer_id,
            credit_hold=standing.credit_hold,
            credit_limit=standing.credit_limit,
            currency=standing.currency,
        )
        verdict = evaluate(channel, change, index=index, catalog=self.catalog, region=region, customer=credit)
        if not verdict.accepted:
            await self._reject(
                uow,
                incoming,
                channel,
                change,
                list(verdict.reasons),
                verdict.order_value,
                verdict.policy,
                index=index,
            )
            return
        subscription_id, replaced_by, undo_cancellation = await self._subscription_id(
            uow, channel, change, context.mapping
        )
        await self.store.record_order(
            uow.conn,
            channel,
            order_key,
            subscription_id=subscription_id,
            action=change.action,
            canonical=change.model_dump(mode="json"),
        )
        if verdict.params is None:
            return
        if replaced_by is not None:
            # The channel replaced this id (STACKIT plan change, AWS renewal): the subscription lives
            # on under the new id, so what happens to the old one (its end) is no command of ours.
            log.info(
                "%s %s of %s recorded only: superseded by %s",
                channel,
                change.action,
                change.channel_subscription_id,
                replaced_by,
            )
            return
        correlation = derived_id("order", channel, order_key)
        if undo_cancellation and verdict.command in ("change_plan", "change_quantity"):
            # The replaced id was cancelling (STACKIT: cancel the old plan, buy the new one); the
            # subscription continues, so its scheduled end goes first.
            self._emit_command(
                uow,
                incoming,
                change,
                subscription_id,
                params=UndoScheduledChangeParams(),
                idempotency_key=f"{channel}:{order_key}:undo-cancellation",
                correlation=correlation,
                discriminator="undo-cancellation",
                # now (when the channel told us), not when the new plan starts: by then the old term is over
                effective_at=datetime.fromtimestamp(incoming.timestamp_ms / 1000, UTC),
            )
        params = verdict.params
        if isinstance(params, CreateParams):
            customer = ev.Customer(
                customer_id=customer_id,
                email=change.customer.email,
                name=change.customer.name,
                # The tax team's country for the customer wins over what the order says.
                country=standing.country or change.customer.country or incoming.headers.get("country"),
                region=region,
                account_id=change.account.channel_account_id,
                tax_exempt=bool(standing.tax_exempt),
            )
            # Test mode: the subscription lives on a named test clock (som clock / som simulate).
            clock = incoming.headers.get(TEST_CLOCK_HEADER) or None
            params = params.model_copy(update={"customer": customer, "clock": clock})
        self._emit_command(
            uow,
            incoming,
            change,
            subscription_id,
            params=params,
            idempotency_key=f"{channel}:{order_key}",
            correlation=correlation,
            discriminator="",
            reason=COMMAND_REASONS.get((change.action, change.phase)),
        )

    def _emit_command(
        self,
        uow: UnitOfWork,
        incoming: Incoming,
        change: CanonicalOrderChange,
        subscription_id: str,
        *,
        params: CommandParams,
        idempotency_key: str,
        correlation: str,
        discriminator: str,
        effective_at: datetime | None = None,
        reason: str | None = None,
    ) -> None:
        cmd = ev.SubscriptionCommand(
            subscription_id=subscription_id,
            idempotency_key=idempotency_key,
            channel=change.channel,
            effective_at=effective_at or parse_effective_at(change.effective_at, incoming.timestamp_ms),
            actor=f"channel:{change.channel}",
            reason=reason,
            params=params,
        )
        uow.emit(
            topics.SUBSCRIPTIONS_COMMANDS,
            make_event(
                type=ev.SUBSCRIPTION_COMMAND,
                source=SOURCE,
                subject=subscription_id,
                data=cmd,
                correlation_id=correlation,
                causation_id=correlation,
                discriminator=discriminator,
            ),
        )

    async def _subscription_id(
        self,
        uow: UnitOfWork,
        channel: str,
        change: CanonicalOrderChange,
        existing: SubscriptionMapping | None,
    ) -> tuple[str, str | None, bool]:
        """Internal id for the channel subscription; a replacing id inherits the replaced one's.

        Returns ``(subscription_id, replaced_by, undo_cancellation)``: ``replaced_by`` is the
        channel id that superseded this one (its changes are then recorded only), and
        ``undo_cancellation`` is true when this change takes over a subscription whose replaced
        channel id had a cancellation scheduled. ``existing``: the id's stored mapping, if any.
        """
        if existing:
            return existing.subscription_id, existing.replaced_by, False
        replaced = change.replaces_channel_subscription_id
        if not replaced:
            # A new id: mapped to its derived internal id by the handler's queued writes.
            new_id = derived_id("subscription", channel, change.channel_subscription_id)
            await self.store.insert_mapping(uow.conn, channel, change.channel_subscription_id, new_id)
            return new_id, None, False
        undo_cancellation = False
        subscription_id = await self.store.mark_replaced(
            uow.conn, channel, replaced, change.channel_subscription_id
        )
        if subscription_id is not None:
            last = await self.store.last_cancellation(uow.conn, channel, replaced)
            undo_cancellation = bool(
                last and last.action == "cancel" and last.phase in ("scheduled", "requested")
            )
        if subscription_id is None:
            subscription_id = derived_id("subscription", channel, change.channel_subscription_id)
        await self.store.add_mapping(uow.conn, channel, change.channel_subscription_id, subscription_id)
        return subscription_id, None, undo_cancellation

    async def _reject(
        self,
        uow: UnitOfWork,
        incoming: Incoming,
        channel: str,
        change: CanonicalOrderChange | None,
        reasons: list[Any],
        value: Decimal | None,
        policy: Any,
        *,
        index: int = 0,
    ) -> None:
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
        await self.store.record_rejection(
            uow.conn,
            channel,
            channel_subscription_id=rejected.channel_subscription_id,
            channel_event_id=rejected.channel_event_id,
            reasons=[r.model_dump() for r in rejected.reasons],
            impact_score=impact,
            order_value=value,
            currency=rejected.currency,
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
                discriminator=str(index) if index else "",  # several changes of one payload
            ),
            key=rejected.channel_subscription_id or channel,
        )
