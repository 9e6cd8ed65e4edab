"""Payloads (CloudEvent ``data``) of the events and commands that travel between the workers.

These are the downstream contracts: accounts receivable reads ``InvoiceIssued``,
accounting reads ``JournalEntryPosted``, provisioning reads ``EntitlementsChanged``.
Amounts are decimal strings with their currency beside them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.commands import CommandParams
from shared.contracts.commands import Customer as Customer
from shared.contracts.subscription import SubscriptionEvent
from shared.money import DecimalString

# CloudEvent types
ORDER_ACCEPTED = "som.order.accepted"
ORDER_REJECTED = "som.order.rejected"
SUBSCRIPTION_COMMAND = "som.subscription.command"
SUBSCRIPTION_COMMAND_REJECTED = "som.subscription.command_rejected"
SUBSCRIPTION_STATE_CHANGED = "som.subscription.state_changed"
INVOICE_ISSUED = "som.billing.invoice_issued"
CREDIT_NOTE_ISSUED = "som.billing.credit_note_issued"
ENTITLEMENTS_CHANGED = "som.entitlements.changed"
PAYMENT_REQUESTED = "som.payment.requested"
PAYMENT_RESULT = "som.payment.result"
PAYMENT_METHOD_UPDATED = "som.payment.method_updated"
JOURNAL_ENTRY_POSTED = "som.accounting.journal_entry_posted"
UPCOMING_CHARGE_NOTICE = "som.notification.upcoming_charge"


class SubscriptionCommand(BaseModel):
    """A command to the lifecycle. ``idempotency_key`` makes a repeat a no-op, however late.

    ``params`` is the typed command (:data:`shared.contracts.commands.CommandParams`, discriminated
    by ``params.command``); what only some commands need (plan, quantity, timing, customer ...)
    lives there, so a sender cannot send a field the receiver does not read.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscription_id: str
    idempotency_key: str
    channel: str
    effective_at: datetime
    actor: str = "system"
    reason: str | None = None
    params: CommandParams

    @property
    def command(self) -> str:
        """The command's name (``create``, ``change_plan`` ...)."""
        return self.params.command


class SubscriptionItem(BaseModel):
    """A priced line of a subscription: the base plan or an add-on."""

    plan_id: str
    quantity: int
    unit_amount: DecimalString | None = None


class SubscriptionSnapshot(BaseModel):
    """The subscription as it stands after a change: what billing and entitlements need to act."""

    subscription_id: str
    status: str
    channel: str
    customer: Customer
    plan_id: str
    quantity: int
    billing_interval: str
    currency: str
    unit_amount: DecimalString | None = Field(default=None, description="price override, if any")
    addons: list[SubscriptionItem] = Field(default_factory=list)
    billing_anchor: date | None = None
    anchor_day: int | None = Field(
        default=None, description="day of month boundaries return to when the anchor is a clamped date"
    )
    current_period_start: date | None = None
    current_period_end: date | None = None
    trial_ends_at: datetime | None = None
    grace_period_ends_at: datetime | None = None
    payment_terms_days: int = 0
    test: bool = False
    clock: str | None = Field(
        default=None, description="business clock of the subscription: 'system' or a test clock name"
    )


class SubscriptionStateChanged(BaseModel):
    """Every change of a subscription, with from and to state, effective time, actor and reason."""

    subscription_id: str
    version: int = Field(description="grows by one with every change of this subscription")
    command: str
    from_status: str | None
    to_status: str
    effective_at: datetime
    actor: str
    reason: str | None = None
    events: list[SubscriptionEvent] = Field(
        default_factory=list, description="what happened, in the order the lifecycle decided it"
    )
    snapshot: SubscriptionSnapshot


class SubscriptionCommandRejected(BaseModel):
    """A command not allowed in the current state: nothing changed."""

    subscription_id: str
    command: str
    idempotency_key: str
    status: str | None
    reason_code: str
    message: str


class RejectionReasonData(BaseModel):
    """One machine-readable reason an order was rejected."""

    code: str
    field: str | None = None
    message: str


class OrderRejected(BaseModel):
    """An order intake refused, ranked by impact (order value times the channel's weight)."""

    channel: str
    channel_subscription_id: str | None = None
    channel_event_id: str | None = None
    reasons: list[RejectionReasonData]
    impact_score: DecimalString
    order_value: DecimalString | None = None
    currency: str | None = None
    received_at: datetime


class InvoiceLine(BaseModel):
    """One line of an invoice or credit note."""

    kind: str = Field(description="recurring, proration_credit, proration_charge, one_off, setup_credit ...")
    description: str
    service_period_start: date | None = None
    service_period_end: date | None = None
    quantity: int = 1
    unit_amount: DecimalString
    amount: DecimalString
    tax_rate: DecimalString = Decimal(0)
    tax_amount: DecimalString = Decimal(0)


class InvoiceIssued(BaseModel):
    """An invoice or credit note for accounts receivable. Document numbers are gapless per series."""

    document_type: Literal["invoice", "credit_note"] = "invoice"
    document_number: str
    subscription_id: str
    customer: Customer
    currency: str
    issue_date: date
    due_date: date
    lines: list[InvoiceLine]
    subtotal: DecimalString
    tax: DecimalString
    total: DecimalString
    credits_applied: DecimalString
    amount_due: DecimalString
    test: bool = False


class EntitlementsChanged(BaseModel):
    """The full entitlement set of a subscription; ``version`` only grows."""

    subscription_id: str
    version: int
    status: str
    plan_id: str
    features: list[str]
    limits: dict[str, int]
    instances: int
    can_create_instances: bool
    effective_at: datetime


class SubscriptionNotice(BaseModel):
    """A dated notice about a subscription: an upcoming charge, or the end of its grace period
    (after which provisioning removes its resources and customer data may be deleted)."""

    subscription_id: str
    kind: str = Field(description="upcoming_charge_notice or grace_period_end")
    due_at: datetime
    snapshot: SubscriptionSnapshot


class InstanceReported(BaseModel):
    """Provisioning reports an instance of a subscription (created, running, deleted ...)."""

    subscription_id: str
    instance_id: str
    status: str
    reported_at: datetime


class PaymentRequested(BaseModel):
    """Billing asks the payment provider to collect an invoice (attempt 1, then dunning retries)."""

    payment_id: str = Field(description="<document number>/<attempt>: the provider's idempotency key")
    document_number: str
    subscription_id: str
    customer_id: str
    amount: DecimalString
    currency: str
    attempt: int = Field(ge=1, description="1 for the first collection, 2.. for retries")
    due_date: date
    reason: Literal["invoice", "retry", "payment_method_updated", "refund"] = Field(
        default="invoice", description="refund: pay a credit note's refund back to the customer"
    )
    test: bool = False


class PaymentResult(BaseModel):
    """What the payment provider reports for one attempt (on ``payments.results``)."""

    document_number: str
    subscription_id: str
    attempt: int = Field(ge=1)
    outcome: Literal["succeeded", "failed"]
    failure_reason: str | None = Field(default=None, description="card_declined, insufficient_funds ...")
    payment_id: str | None = None
    amount: DecimalString | None = None
    currency: str | None = None
    processed_at: datetime | None = Field(default=None, description="provider time, recorded only")


class PaymentMethodUpdated(BaseModel):
    """The customer gave a new payment method (on ``payments.results``): retry what is unpaid at once."""

    subscription_id: str
    customer_id: str | None = None
    updated_at: datetime | None = None


class JournalLine(BaseModel):
    """One posting: a non-negative debit or a non-negative credit on an account."""

    account: str = Field(
        description="accounts_receivable, deferred_revenue, revenue, tax_payable, customer_credit"
    )
    debit: DecimalString = Decimal(0)
    credit: DecimalString = Decimal(0)


class JournalEntryPosted(BaseModel):
    """A balanced journal entry (IFRS 15): on issue of a document, or revenue recognised at a month end."""

    entry_id: str
    subscription_id: str
    kind: Literal["issue", "account_credit", "recognition", "refund"]
    entry_date: date
    currency: str
    description: str
    source_document: str | None = Field(default=None, description="document number the entry comes from")
    lines: list[JournalLine]
    total_debit: DecimalString
    total_credit: DecimalString
    test: bool = False
