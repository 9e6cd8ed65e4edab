"""Billing handlers: lifecycle changes in, invoices and credit notes out (through the outbox)."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal

from shared.catalog import Catalog
from shared.contracts import events as ev
from shared.contracts.envelope import CloudEvent, make_event
from shared.db.uow import UnitOfWork
from shared.messaging import topics
from shared.messaging.runtime import Incoming
from shared.money import Money

log = logging.getLogger("som.billing")
SOURCE = "som/billing"

_SERIES = {"invoice": "INV", "credit_note": "CN"}


async def next_document_number(uow: UnitOfWork, document_type: str) -> str:
    """Gapless number in the document type's series (locked until the transaction ends)."""
    series = _SERIES[document_type]
    value = await uow.conn.fetchval(
        "UPDATE billing.document_sequences SET next_value = next_value + 1 WHERE series = $1 "
        "RETURNING next_value - 1",
        series,
    )
    return f"{series}-{value:08d}"


class BillingHandlers:
    """Handlers of ``subscriptions.events``."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def on_subscription_event(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Bill what the lifecycle change implies."""
        event = incoming.cloud_event()
        if event.type != ev.SUBSCRIPTION_STATE_CHANGED:
            return
        change = event.payload(ev.SubscriptionStateChanged)
        snap = change.snapshot
        known = await uow.conn.fetchrow(
            "SELECT lifecycle_version FROM billing.subscriptions WHERE subscription_id = $1 FOR UPDATE",
            change.subscription_id,
        )
        if known and known["lifecycle_version"] >= change.version:
            log.info("stale lifecycle version %d for %s ignored", change.version, change.subscription_id)
            return
        charged_through: date | None = None
        if change.to_status == "active" and change.from_status in (None, "pending_approval"):
            assert snap.current_period_start and snap.current_period_end
            await self.issue_invoice(
                uow, event, snap, issue_date=snap.current_period_start,
                lines=[self.recurring_line(snap, snap.current_period_start, snap.current_period_end)],
            )
            charged_through = snap.current_period_end
        await uow.conn.execute(
            "INSERT INTO billing.subscriptions (subscription_id, lifecycle_version, snapshot, charged_through) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (subscription_id) DO UPDATE SET "
            "lifecycle_version = EXCLUDED.lifecycle_version, snapshot = EXCLUDED.snapshot, "
            "charged_through = COALESCE(EXCLUDED.charged_through, billing.subscriptions.charged_through), "
            "updated_at = now()",
            change.subscription_id, change.version, snap.model_dump(mode="json"), charged_through,
        )

    def recurring_line(self, snap: ev.SubscriptionSnapshot, start: date, end: date) -> ev.InvoiceLine:
        """The base plan billed in advance for one full period."""
        plan = self.catalog.plan(snap.plan_id)
        unit = snap.unit_amount if snap.unit_amount is not None else plan.price_on(
            snap.currency, snap.billing_interval, start
        ).unit_amount
        amount = Money(unit, snap.currency).multiply(snap.quantity)
        return ev.InvoiceLine(
            kind="recurring",
            description=f"{plan.name} ({snap.billing_interval}) x {snap.quantity}",
            service_period_start=start,
            service_period_end=end,
            quantity=snap.quantity,
            unit_amount=unit,
            amount=amount.amount,
        )

    async def issue_invoice(
        self, uow: UnitOfWork, cause: CloudEvent, snap: ev.SubscriptionSnapshot, *, issue_date: date,
        lines: list[ev.InvoiceLine],
    ) -> ev.InvoiceIssued:
        """Number, store and publish an invoice."""
        number = await next_document_number(uow, "invoice")
        zero = Money.zero(snap.currency)
        subtotal = sum((Money(line.amount, snap.currency) for line in lines), zero)
        tax = sum((Money(line.tax_amount, snap.currency) for line in lines), zero)
        total = subtotal + tax
        invoice = ev.InvoiceIssued(
            document_number=number,
            subscription_id=snap.subscription_id,
            customer=snap.customer,
            currency=snap.currency,
            issue_date=issue_date,
            due_date=issue_date + timedelta(days=snap.payment_terms_days),
            lines=lines,
            subtotal=subtotal.amount,
            tax=tax.amount,
            total=total.amount,
            credits_applied=Decimal(0),
            amount_due=total.amount,
            test=snap.test,
        )
        await uow.conn.execute(
            "INSERT INTO billing.documents (document_number, document_type, subscription_id, customer_id, "
            "currency, issue_date, due_date, subtotal, tax, total, amount_due, body, cause_event_id) "
            "VALUES ($1, 'invoice', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            number, snap.subscription_id, snap.customer.customer_id, snap.currency, issue_date,
            invoice.due_date, subtotal.amount, tax.amount, total.amount, invoice.amount_due,
            invoice.model_dump(mode="json"), cause.id,
        )
        uow.emit(
            topics.BILLING_INVOICES,
            make_event(
                type=ev.INVOICE_ISSUED,
                source=SOURCE,
                subject=snap.subscription_id,
                data=invoice,
                correlation_id=cause.correlationid,
                causation_id=cause.id,
                discriminator=number,
            ),
        )
        return invoice
