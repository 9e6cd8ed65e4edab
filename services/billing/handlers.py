"""Billing handlers: lifecycle changes in, invoices and credit notes out (through the outbox).

Thin I/O around the pure domain (``services/billing/domain``): per subscription, billing keeps
the domain's ``BillingState`` as JSON with the last lifecycle version applied (a stale or
duplicate version changes nothing), maps each lifecycle change to domain commands
(:mod:`services.billing.lifecycle_map`), applies them with the change's business dates, numbers
the documents gapless per series (INV / CN), stores them and publishes ``InvoiceIssued`` on
``billing.invoices``. Journal entries and payment requests of a document are billing timers
written in the same transaction, or published with it when already due
(:mod:`services.billing.journal`, :mod:`services.billing.payments`).
"""

from __future__ import annotations

import logging
from decimal import Decimal

import asyncpg
from pydantic import ValidationError

from services.billing import journal, metrics, store
from services.billing.domain import (
    Activate,
    BillingContext,
    BillingError,
    BillingOutcome,
    BillingState,
    Document,
    NoChange,
    apply,
    state_from_snapshot,
    to_invoice_issued,
)
from services.billing.domain.tax import TaxError
from services.billing.lifecycle_map import (
    Align,
    Run,
    Start,
    Step,
    align,
    invoices,
    is_live,
    steps_for,
)
from services.billing.payments import Payments, payment_request, request_timer
from services.billing.replenishment import Replenishments, terms_of
from shared import timekeeping
from shared.catalog import CatalogError
from shared.contracts import events as ev
from shared.contracts.envelope import CloudEvent, caused_by
from shared.db.uow import UnitOfWork
from shared.messaging import topics
from shared.messaging.errors import PermanentError, payload_of
from shared.messaging.runtime import Incoming

log = logging.getLogger("som.billing")
SOURCE = "som/billing"


class BillingHandlers:
    """Handlers of ``subscriptions.events`` and ``payments.results``."""

    def __init__(self, ctx: BillingContext) -> None:
        self.ctx = ctx
        self.payments = Payments(ctx)
        self.replenishments = Replenishments(ctx, self.issue)

    # -- lifecycle changes ----------------------------------------------------------------------

    async def on_subscription_event(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Bill what the lifecycle change implies."""
        event = incoming.cloud_event()
        if event.type != ev.SUBSCRIPTION_STATE_CHANGED:
            return
        change = payload_of(event, ev.SubscriptionStateChanged, "a lifecycle change billing can read")
        # Account credit is the customer's: locked with the subscription's record, so that two
        # subscriptions of one customer consume and add to one balance in turn.
        customer_id, currency = change.snapshot.customer.customer_id, change.snapshot.currency.upper()
        # An activation or a renewal invoices: its number is taken in the same round trip.
        rec, credit, reserved = await store.load_for_change(
            uow.conn, change, customer_id, currency, reserve="invoice" if invoices(change.events) else None
        )
        if rec is not None and rec.lifecycle_version >= change.version:
            log.info("stale lifecycle version %d for %s ignored", change.version, change.subscription_id)
            if reserved is not None:
                await store.release_document_number(uow.conn, reserved)
            return
        if rec is None:
            rec = store.BillingRecord(
                change.subscription_id, 0, change.snapshot, None, Decimal(0), None, None
            )
        elif change.version > rec.lifecycle_version + 1:
            log.warning(
                "lifecycle version %d of %s follows %d: a change was skipped",
                change.version,
                change.subscription_id,
                rec.lifecycle_version,
            )
        rec.snapshot = change.snapshot
        rec.lifecycle_version = change.version
        rec.account_credit = credit
        rec.reserved_number = reserved
        await self._bill_change(uow, event, change, rec)
        if rec.reserved_number is not None:  # nothing was issued under it after all
            await store.release_document_number(uow.conn, rec.reserved_number)

    async def _bill_change(
        self,
        uow: UnitOfWork,
        event: CloudEvent,
        change: ev.SubscriptionStateChanged,
        rec: store.BillingRecord,
    ) -> None:
        """Issue what the change's lifecycle events imply and save the record."""
        rec.clock = change.snapshot.clock or rec.clock or await store.resolve_clock(uow.conn, change.snapshot)
        if terms_of(self.ctx, change.snapshot.plan_id) is not None:
            # Billed per delivery cycle, not per period (services.billing.replenishment).
            await self.replenishments.on_lifecycle(uow, event, change, rec)
            await store.save(uow.conn, rec)
            return
        for lifecycle_event in change.events:
            for step in steps_for(lifecycle_event):
                done = self.step(rec, step)
                if done is None:
                    continue
                outcome, reason = done
                for note in outcome.notes:
                    if note.startswith("customer has no country"):
                        log.warning("%s: %s", change.subscription_id, note)
                rec.state = outcome.state
                balance = rec.account_credit
                for doc in outcome.documents:
                    issued = await self.issue(uow, event, rec, doc, reason=reason)
                    balance = await self._move_credit(uow, rec, doc, issued.document_number, balance)
                if balance != outcome.account_credit_after:  # pragma: no cover - the engine's invariant
                    raise PermanentError(f"credit ledger mismatch for {change.subscription_id}")
                rec.account_credit = outcome.account_credit_after
        await store.save(uow.conn, rec)

    async def _move_credit(
        self, uow: UnitOfWork, rec: store.BillingRecord, doc: Document, number: str, balance: Decimal
    ) -> Decimal:
        """Record what a document does to the customer's credit; the balance after it."""
        kind, amount = None, Decimal(0)
        if doc.document_type == "credit_note" and doc.credit_to_account > 0:
            kind, amount = "credit_note", doc.credit_to_account
        elif doc.document_type == "invoice" and doc.credits_applied > 0:
            kind, amount = "applied", -doc.credits_applied
        elif doc.document_type == "credit_note" and doc.refund_amount > 0:
            kind = "refund"  # paid back, not kept: recorded, the balance does not move
        if kind is None:
            return balance
        after = balance + amount
        await store.record_credit_movement(
            uow.conn,
            customer_id=rec.snapshot.customer.customer_id,
            currency=doc.currency,
            kind=kind,
            amount=amount if kind != "refund" else doc.refund_amount,
            balance_after=after,
            subscription_id=rec.subscription_id,
            document_number=number,
            business_date=doc.issue_date,
        )
        return after

    def step(self, rec: store.BillingRecord, step: Step) -> tuple[BillingOutcome, str] | None:
        """Apply one step to the record's state (pure); the outcome and the documents' reason, if any."""
        state = rec.state
        try:
            if isinstance(step, Start):
                if is_live(state):
                    log.warning(
                        "%s: activation of a subscription billing already bills; ignored", rec.subscription_id
                    )
                    return None
                fresh = state_from_snapshot(rec.snapshot, started_on=step.on)
                if state is not None:  # restarted (reactivation, trial after a paid period): ledger ids go on
                    fresh = fresh.model_copy(update={"next_charge_seq": state.next_charge_seq})
                rec.started_on = step.on
                return apply(
                    fresh,
                    Activate(on=step.on, through=step.through),
                    self.ctx,
                    account_credit=rec.account_credit,
                ), "activation"
            if not is_live(state):
                log.info("%s: %s while billing is not running: nothing billed", rec.subscription_id, step)
                return None
            assert state is not None
            if isinstance(step, Align):
                rec.state, note = align(state, rec.snapshot, step.on)
                if note:
                    log.info("%s: %s", rec.subscription_id, note)
                return None
            assert isinstance(step, Run)
            return apply(state, step.command, self.ctx, account_credit=rec.account_credit), step.reason
        except NoChange as exc:
            # Billing already has these terms (e.g. a seat decrease it scheduled for the period end
            # was undone in the lifecycle): nothing to bill now; the renewal aligns the items.
            log.info("%s: %s", rec.subscription_id, exc)
            return None
        except BillingError as exc:
            raise PermanentError(f"billing cannot apply {step} to {rec.subscription_id}: {exc}") from exc
        except (TaxError, CatalogError) as exc:
            raise PermanentError(f"{rec.subscription_id}: {exc}") from exc

    async def issue(
        self, uow: UnitOfWork, cause: CloudEvent, rec: store.BillingRecord, doc: Document, *, reason: str
    ) -> ev.InvoiceIssued:
        """Number, store and publish a document; schedule its journal entries and its first payment attempt."""
        number = rec.take_reserved(doc.document_type) or await store.next_document_number(
            uow.conn, doc.document_type
        )
        numbered = doc.model_copy(update={"document_number": number})
        snap = rec.snapshot
        contract = to_invoice_issued(numbered, document_number=number, customer=snap.customer, test=snap.test)
        invoice = doc.document_type == "invoice"
        status = "issued" if not invoice else ("open" if doc.amount_due > 0 else "paid")
        await store.insert_document(
            uow.conn,
            numbered,
            contract,
            customer_id=snap.customer.customer_id,
            status=status,
            reason=reason,
            cause_event_id=cause.id,
            lifecycle_version=rec.lifecycle_version,
            attempts=1 if status == "open" else 0,
        )
        uow.emit(
            topics.BILLING_INVOICES,
            caused_by(
                cause,
                type=ev.INVOICE_ISSUED if invoice else ev.CREDIT_NOTE_ISSUED,
                source=SOURCE,
                subject=snap.subscription_id,
                data=contract,
                discriminator=number,
                time=cause.time,
            ),
        )
        metrics.DOCUMENTS_ISSUED.labels(doc.document_type).inc()
        timers = journal.entry_timers(numbered, clock=rec.business_clock, test=snap.test)
        if not invoice and doc.refund_amount > 0:
            # A refund is a request on the payment side (its cash entry is in the journal).
            refund = ev.PaymentRequested(
                payment_id=f"{number}/refund",
                document_number=number,
                subscription_id=snap.subscription_id,
                customer_id=snap.customer.customer_id,
                amount=doc.refund_amount,
                currency=doc.currency,
                attempt=1,
                due_date=doc.issue_date,
                reason="refund",
                test=snap.test,
            )
            timers.append(
                request_timer(refund, due_at=journal.start_of(doc.issue_date), clock=rec.business_clock)
            )
        if status == "open":
            request = payment_request(
                numbered, customer_id=snap.customer.customer_id, attempt=1, reason="invoice", test=snap.test
            )
            timers.append(
                request_timer(request, due_at=journal.start_of(doc.due_date), clock=rec.business_clock)
            )
        await timekeeping.schedule_or_publish(uow, timers, cause=cause, source=SOURCE)
        log.info(
            "%s %s issued for %s: total %s %s (%s)",
            doc.document_type,
            number,
            snap.subscription_id,
            doc.total,
            doc.currency,
            reason,
        )
        return contract

    # -- payments --------------------------------------------------------------------------------

    async def on_payment_event(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Payment results and payment-method updates (``payments.results``)."""
        event = incoming.cloud_event()
        try:
            await self.payments.on_result(event, uow)
        except ValidationError as exc:
            raise PermanentError(f"not a payment event billing can read: {exc.errors()[0]['msg']}") from exc


async def load_state(
    conn: asyncpg.Connection | asyncpg.Pool, subscription_id: str
) -> tuple[BillingState | None, Decimal, store.BillingRecord | None]:
    """The stored billing state and account credit of a subscription (as the worker sees them)."""
    rec = await store.load(conn, subscription_id)
    if rec is None:
        return None, Decimal(0), None
    rec.account_credit = await store.customer_credit(
        conn, rec.snapshot.customer.customer_id, rec.snapshot.currency.upper()
    )
    return rec.state, rec.account_credit, rec
