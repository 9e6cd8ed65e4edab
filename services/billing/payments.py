"""Collection and dunning: payment requests out, payment results in, lifecycle commands back.

* Every invoice with an amount due gets attempt 1: a billing timer due on the invoice's due
  date (payment terms: net 0 is due on the issue date, so it goes at once) that publishes
  ``PaymentRequested`` on ``payments.requests``.
* ``PaymentResult`` on ``payments.results``:
  - succeeded: the invoice is paid. If it was in dunning, the subscription gets
    ``payment_recovered`` (or ``reactivate`` when billing had suspended it), unless another
    invoice of it is still in dunning.
  - failed: :func:`record_failure` of the dunning policy. The first failure sends
    ``mark_past_due``; each retry is a billing timer (``PaymentRequested`` with the next
    attempt number) due at 00:00 UTC of the retry date on the subscription's clock; the
    failure after the last retry sends ``suspend``.
  - a result of an older attempt than the invoice's latest, or for a paid invoice, changes nothing.
* ``PaymentMethodUpdated`` on ``payments.results``: every unpaid invoice in dunning is retried
  at once (the pending retry timer is cancelled), even after the schedule was exhausted.

Dates are business dates on the subscription's clock. Commands to the lifecycle carry an
idempotency key derived from the cause event, so a re-run sends the same key.
"""

from __future__ import annotations

import logging
from datetime import datetime

from services.billing import metrics, store
from services.billing.domain import (
    BillingContext,
    Document,
    payment_method_updated,
    record_failure,
    record_success,
)
from services.billing.journal import start_of
from shared import timekeeping
from shared.contracts import events as ev
from shared.contracts.commands import params_for
from shared.contracts.envelope import CloudEvent, caused_by
from shared.db.uow import UnitOfWork
from shared.messaging import topics
from shared.messaging.errors import PermanentError

log = logging.getLogger("som.billing.payments")
SOURCE = "som/billing"
PAYMENT_KIND = "payment"

# Dunning effects of the policy -> lifecycle commands.
EFFECT_COMMANDS = {"past_due": "mark_past_due", "suspended": "suspend"}


def payment_request(
    doc: store.StoredDocument | Document, *, customer_id: str, attempt: int, reason: str, test: bool
) -> ev.PaymentRequested:
    """The request for one attempt at collecting ``doc`` (a numbered document)."""
    number = doc.document_number
    assert number, "a payment request needs the document number"
    return ev.PaymentRequested(
        payment_id=f"{number}/{attempt}",
        document_number=number,
        subscription_id=doc.subscription_id,
        customer_id=customer_id,
        amount=doc.amount_due,
        currency=doc.currency,
        attempt=attempt,
        due_date=doc.due_date,
        reason=reason,  # type: ignore[arg-type]
        test=test,
    )


def timer_kind(document_number: str) -> str:
    """Kind of the payment timers of one invoice (at most one pending at a time)."""
    return f"{PAYMENT_KIND}:{document_number}"


def request_timer(request: ev.PaymentRequested, *, due_at: datetime, clock: str) -> timekeeping.Timer:
    """A payment attempt as a billing timer."""
    return timekeeping.Timer(
        subscription_id=request.subscription_id,
        kind=timer_kind(request.document_number),
        due_at=due_at,
        clock=clock,
        topic=topics.PAYMENTS_REQUESTS,
        event_type=ev.PAYMENT_REQUESTED,
        payload=request,
    )


async def schedule_request(
    uow: UnitOfWork, request: ev.PaymentRequested, *, due_at: datetime, clock: str
) -> None:
    """Schedule a payment attempt (a retry) as a billing timer."""
    await timekeeping.schedule_many(uow, [request_timer(request, due_at=due_at, clock=clock)])


async def send_command(
    uow: UnitOfWork,
    cause: CloudEvent,
    snapshot: ev.SubscriptionSnapshot,
    command: str,
    *,
    at: datetime,
    reason: str,
) -> None:
    """A command to the lifecycle (``mark_past_due``, ``suspend``, ``payment_recovered``, ``reactivate``)."""
    key = f"billing:{cause.id}:{command}"
    cmd = ev.SubscriptionCommand(
        subscription_id=snapshot.subscription_id,
        idempotency_key=key,
        channel=snapshot.channel,
        effective_at=at,
        actor="system:billing",
        reason=reason,
        params=params_for(command),
    )
    uow.emit(
        topics.SUBSCRIPTIONS_COMMANDS,
        caused_by(
            cause,
            type=ev.SUBSCRIPTION_COMMAND,
            source=SOURCE,
            subject=snapshot.subscription_id,
            data=cmd,
            discriminator=command,
            time=at,
        ),
    )


class Payments:
    """Handlers of ``payments.results``."""

    def __init__(self, ctx: BillingContext) -> None:
        self.ctx = ctx

    async def on_result(self, incoming_event: CloudEvent, uow: UnitOfWork) -> None:
        """A payment result or a payment-method update."""
        if incoming_event.type == ev.PAYMENT_RESULT:
            await self._result(incoming_event, incoming_event.payload(ev.PaymentResult), uow)
        elif incoming_event.type == ev.PAYMENT_METHOD_UPDATED:
            await self._method_updated(incoming_event, incoming_event.payload(ev.PaymentMethodUpdated), uow)
        else:
            log.info("ignoring %s on payments.results", incoming_event.type)

    async def _context(self, uow: UnitOfWork, subscription_id: str) -> tuple[store.BillingRecord, datetime]:
        rec = await store.load(uow.conn, subscription_id, lock=True)
        if rec is None:
            raise PermanentError(f"payment event for unknown subscription {subscription_id}")
        now = await timekeeping.clock_now(uow.conn, rec.business_clock)
        return rec, now

    async def _result(self, cause: CloudEvent, result: ev.PaymentResult, uow: UnitOfWork) -> None:
        rec, now = await self._context(uow, result.subscription_id)
        today = now.date()
        doc = await store.document(uow.conn, result.document_number, lock=True)
        if (
            doc is not None
            and doc.subscription_id == result.subscription_id
            and doc.document_type == "credit_note"
        ):
            # The provider's answer to a refund request: recorded, nothing to collect.
            await uow.conn.execute(
                "INSERT INTO billing.payment_attempts (document_number, attempt, outcome, failure_reason, "
                "business_date, event_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                doc.document_number,
                result.attempt,
                result.outcome,
                result.failure_reason,
                today,
                cause.id,
            )
            log.info("refund of %s: %s", doc.document_number, result.outcome)
            return
        if doc is None or doc.subscription_id != result.subscription_id or doc.document_type != "invoice":
            raise PermanentError(f"no invoice {result.document_number} of {result.subscription_id}")
        recorded = await uow.conn.execute(
            "INSERT INTO billing.payment_attempts (document_number, attempt, outcome, failure_reason, business_date, "
            "event_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            doc.document_number,
            result.attempt,
            result.outcome,
            result.failure_reason,
            today,
            cause.id,
        )
        if recorded.endswith(" 0"):
            log.info("result of %s attempt %d already recorded", doc.document_number, result.attempt)
            return
        metrics.PAYMENT_RESULTS.labels(result.outcome).inc()
        if doc.reason == "renewal":
            metrics.RENEWALS.labels(result.outcome).inc()
        if doc.status != "open":
            log.info(
                "result of %s attempt %d: invoice is %s, nothing to do",
                doc.document_number,
                result.attempt,
                doc.status,
            )
            return
        if result.outcome == "succeeded":
            await self._paid(uow, cause, rec, doc, now)
            return
        if result.attempt < doc.attempts:
            log.info(
                "stale failure of %s attempt %d (attempt %d is under way)",
                doc.document_number,
                result.attempt,
                doc.attempts,
            )
            return
        await self._failed(uow, cause, rec, doc, now, result)

    async def _paid(
        self,
        uow: UnitOfWork,
        cause: CloudEvent,
        rec: store.BillingRecord,
        doc: store.StoredDocument,
        now: datetime,
    ) -> None:
        await timekeeping.cancel_timers(uow, doc.subscription_id, [timer_kind(doc.document_number)])
        await store.update_collection(
            uow.conn, doc.document_number, status="paid", clear_dunning=True, paid_on=now.date()
        )
        decision = record_success(doc.dunning)
        if decision.lifecycle_effect is None:
            return
        others = [
            d
            for d in await store.documents_of(uow.conn, doc.subscription_id, open_only=True)
            if d.document_number != doc.document_number and d.dunning is not None
        ]
        if others:
            log.info("%s paid; %s still in dunning", doc.document_number, [d.document_number for d in others])
            return
        suspended = doc.suspended
        metrics.DUNNING_ACTIONS.labels("recovered").inc()
        await send_command(
            uow,
            cause,
            rec.snapshot,
            "reactivate" if suspended else "payment_recovered",
            at=now,
            reason=f"payment of {doc.document_number} collected",
        )

    async def _failed(
        self,
        uow: UnitOfWork,
        cause: CloudEvent,
        rec: store.BillingRecord,
        doc: store.StoredDocument,
        now: datetime,
        result: ev.PaymentResult,
    ) -> None:
        decision = record_failure(self.ctx.policy.dunning, doc.dunning, now.date())
        assert decision.state is not None
        effect = decision.lifecycle_effect
        suspended = doc.suspended or effect == self.ctx.policy.dunning.on_exhausted
        await timekeeping.cancel_timers(uow, doc.subscription_id, [timer_kind(doc.document_number)])
        attempts = doc.attempts
        if decision.retry_on is not None:
            attempts = doc.attempts + 1
            request = payment_request(
                doc,
                customer_id=rec.snapshot.customer.customer_id,
                attempt=attempts,
                reason="retry",
                test=rec.snapshot.test,
            )
            await schedule_request(uow, request, due_at=start_of(decision.retry_on), clock=rec.business_clock)
            metrics.DUNNING_ACTIONS.labels("retry_scheduled").inc()
        await store.update_collection(
            uow.conn, doc.document_number, attempts=attempts, dunning=decision.state, suspended=suspended
        )
        why = f"payment of {doc.document_number} failed (attempt {result.attempt}: {result.failure_reason or 'unknown'})"
        if effect is not None and effect in EFFECT_COMMANDS:
            metrics.DUNNING_ACTIONS.labels(effect).inc()
            await send_command(uow, cause, rec.snapshot, EFFECT_COMMANDS[effect], at=now, reason=why)

    async def _method_updated(
        self, cause: CloudEvent, update: ev.PaymentMethodUpdated, uow: UnitOfWork
    ) -> None:
        rec, now = await self._context(uow, update.subscription_id)
        for doc in await store.documents_of(uow.conn, update.subscription_id, open_only=True, lock=True):
            if doc.dunning is None:
                continue  # first attempt not failed yet: nothing to retry
            in_flight = await uow.conn.fetchval(
                "SELECT fired_at IS NOT NULL FROM timekeeping.timers WHERE service = $1 AND subscription_id = $2 "
                "AND kind = $3 AND cancelled_at IS NULL ORDER BY id DESC LIMIT 1",
                uow.service,
                doc.subscription_id,
                timer_kind(doc.document_number),
            )
            decision = payment_method_updated(doc.dunning, now.date())
            assert decision.state is not None
            if in_flight and doc.dunning.next_retry_on is not None:
                # The scheduled retry was just sent and its result is not in: that attempt is the retry.
                log.info("retry of %s already under way", doc.document_number)
                continue
            await timekeeping.cancel_timers(uow, doc.subscription_id, [timer_kind(doc.document_number)])
            attempt = doc.attempts + 1 if doc.dunning.next_retry_on is None else doc.attempts
            request = payment_request(
                doc,
                customer_id=rec.snapshot.customer.customer_id,
                attempt=attempt,
                reason="payment_method_updated",
                test=rec.snapshot.test,
            )
            uow.emit(
                topics.PAYMENTS_REQUESTS,
                caused_by(
                    cause,
                    type=ev.PAYMENT_REQUESTED,
                    source=SOURCE,
                    subject=doc.subscription_id,
                    data=request,
                    discriminator=f"{doc.document_number}/{attempt}",
                    time=now,
                ),
            )
            await store.update_collection(
                uow.conn,
                doc.document_number,
                attempts=attempt,
                dunning=decision.state,
                suspended=doc.suspended,
            )
            metrics.DUNNING_ACTIONS.labels("immediate_retry").inc()
