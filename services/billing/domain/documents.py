"""Assembling invoices and credit notes from lines: tax per line, totals, account credit, due date."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from services.billing.domain.model import ZERO, Document, Line, Settlement, TaxProfile
from services.billing.domain.tax import TaxTable, tax_line
from shared.contracts import events as ev
from shared.money import is_exact, quantum


@dataclass(frozen=True)
class AssembledDocument:
    """A document and the customer's account credit left after it."""

    document: Document
    account_credit_after: Decimal


def due_date(issue_date: date, payment_terms_days: int) -> date:
    """Net-N payment terms: due ``payment_terms_days`` after the issue date (net 0 = due on issue)."""
    if payment_terms_days < 0:
        raise ValueError("payment terms cannot be negative")
    return issue_date + timedelta(days=payment_terms_days)


def apply_account_credit(total: Decimal, available_credit: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """``(credits_applied, amount_due, credit_left)`` for an invoice total.

    ``amount_due = max(0, total - available_credit)``; the unused credit carries forward.
    """
    if available_credit < 0:
        raise ValueError("available credit cannot be negative")
    applied = min(max(total, ZERO), available_credit)
    return applied, total - applied, available_credit - applied


def assemble_document(
    lines: Sequence[Line],
    *,
    subscription_id: str,
    currency: str,
    issue_date: date,
    tax_table: TaxTable,
    tax_profile: TaxProfile,
    payment_terms_days: int = 0,
    account_credit: Decimal = ZERO,
    settlement: Settlement = "account_credit",
) -> AssembledDocument:
    """Tax each line, total the lines, and make an invoice (total >= 0) or a credit note (total < 0).

    An invoice consumes available account credit; a credit note is settled by a refund
    or by adding to the account credit, per ``settlement``.
    """
    if not lines:
        raise ValueError("a document needs at least one line")
    q = quantum(currency)
    if not is_exact(account_credit, currency):
        raise ValueError(f"account credit {account_credit} is not exact in {currency}")
    account_credit = account_credit.quantize(q)
    rate = tax_table.rate_for(tax_profile, issue_date)
    taxed = tuple(tax_line(line, rate, currency) for line in lines)
    # Quantized so that documents always carry the currency's digits ("0.00", not "0").
    subtotal = sum((line.amount for line in taxed), ZERO).quantize(q)
    tax = sum((line.tax_amount for line in taxed), ZERO).quantize(q)
    total = subtotal + tax
    if total >= 0:
        applied, amount_due, credit_left = apply_account_credit(total, account_credit)
        doc = Document(
            document_type="invoice",
            subscription_id=subscription_id,
            currency=currency,
            issue_date=issue_date,
            due_date=due_date(issue_date, payment_terms_days),
            lines=taxed,
            subtotal=subtotal,
            tax=tax,
            total=total,
            credits_applied=applied,
            amount_due=amount_due,
        )
        return AssembledDocument(doc, credit_left)
    refund = -total if settlement == "refund" else ZERO.quantize(q)
    to_account = -total if settlement == "account_credit" else ZERO.quantize(q)
    doc = Document(
        document_type="credit_note",
        subscription_id=subscription_id,
        currency=currency,
        issue_date=issue_date,
        due_date=issue_date,
        lines=taxed,
        subtotal=subtotal,
        tax=tax,
        total=total,
        refund_amount=refund,
        credit_to_account=to_account,
    )
    return AssembledDocument(doc, account_credit + to_account)


def to_invoice_issued(
    document: Document, *, document_number: str, customer: ev.Customer, test: bool = False
) -> ev.InvoiceIssued:
    """The published contract of a numbered document (amounts keep the customer-side sign)."""
    return ev.InvoiceIssued(
        document_type=document.document_type,
        document_number=document_number,
        subscription_id=document.subscription_id,
        customer=customer,
        currency=document.currency,
        issue_date=document.issue_date,
        due_date=document.due_date,
        lines=[
            ev.InvoiceLine(
                kind=line.kind,
                description=line.description,
                service_period_start=line.service_period_start,
                service_period_end=line.service_period_end,
                quantity=line.quantity,
                unit_amount=line.unit_amount,
                amount=line.amount,
                tax_rate=line.tax_rate,
                tax_amount=line.tax_amount,
                price_basis=line.price_basis,
            )
            for line in document.lines
        ],
        subtotal=document.subtotal,
        tax=document.tax,
        total=document.total,
        credits_applied=document.credits_applied,
        amount_due=document.amount_due,
        test=test,
    )
