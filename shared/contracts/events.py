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

from shared.contracts.commands import CommandParams, ReplenishmentParams
from shared.contracts.commands import Customer as Customer
from shared.contracts.commands import SubscriptionUser as SubscriptionUser
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
CUSTOMER_ENTITLEMENTS_CHANGED = "som.entitlements.customer_changed"
CUSTOMER_ENTITLEMENTS_SNAPSHOT = "som.entitlements.customer_snapshot"
ENTITLEMENTS_COMMAND = "som.entitlements.command"
ENTITLEMENTS_APPLIED = "som.entitlements.applied"
ENTITLEMENTS_VIOLATION = "som.entitlements.violation"
ENTITLEMENTS_INSTRUCTION = "som.entitlements.instruction"
USAGE_REPORTED = "som.usage.reported"
USAGE_THRESHOLD_REACHED = "som.entitlements.usage_threshold_reached"
PAYMENT_REQUESTED = "som.payment.requested"
PAYMENT_RESULT = "som.payment.result"
PAYMENT_METHOD_UPDATED = "som.payment.method_updated"
JOURNAL_ENTRY_POSTED = "som.accounting.journal_entry_posted"
UPCOMING_CHARGE_NOTICE = "som.notification.upcoming_charge"
VENDOR_DEADLINE_MISSED = "som.channels.deadline_missed"
REPLENISHMENT_ORDER_CREATED = "som.replenishment.order_created"
REPLENISHMENT_CYCLE_DELAYED = "som.replenishment.cycle_delayed"
REPLENISHMENT_COMMAND = "som.replenishment.command"
PRICING_UPDATED = "som.pricing.updated"


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
    users: list[SubscriptionUser] = Field(
        default_factory=list, description="the people the channel named at creation, with their roles"
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


class VendorDeadlineMissed(BaseModel):
    """A vendor call (activate, acknowledge, approve, meter) not made before the vendor stopped waiting."""

    channel: str
    operation_id: str
    action: str
    subscription_id: str
    channel_subscription_id: str
    deadline: datetime
    detected_at: datetime
    attempts: int
    last_error: str | None = None


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
    price_basis: str | None = Field(default=None, description="what fixed the unit price (replenishment)")


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


class PendingEntitlementChange(BaseModel):
    """A change already decided that takes effect at ``effective_at`` (published in advance).

    ``kind``: ``access`` (a grace period ends: ``access`` is the level after it), ``plan_change``
    (``to_plan_id``, ``to_quantity``), ``cancellation``, ``override_start``, ``override_end``.
    """

    model_config = ConfigDict(extra="allow")

    kind: str
    effective_at: datetime


class EntitlementsChanged(BaseModel):
    """The full entitlement set of a subscription; ``version`` only grows.

    ``previous_version`` is the version this one follows (0 for the first): a consumer that holds
    another version has missed one and asks for a snapshot (``som entitlements snapshot``).
    """

    subscription_id: str
    customer_id: str | None = None
    version: int
    previous_version: int = 0
    status: str
    plan_id: str
    access: Literal["full", "held", "read_only", "revoked"] = "full"
    features: list[str]
    limits: dict[str, int]
    instances: int
    can_create_instances: bool
    writable: bool = True
    overrides: list[str] = Field(default_factory=list, description="ids of the operator overrides in force")
    pending: list[PendingEntitlementChange] = Field(default_factory=list)
    effective_at: datetime


class CustomerEntitlementsChanged(BaseModel):
    """A customer's set merged over all its subscriptions (on ``entitlements.customers``, keyed by customer).

    Booleans OR, each limit by the catalog's merge rule (sum or max), instances add up, the
    strongest access wins; customer-wide overrides are applied. ``version`` only grows per customer.
    A snapshot (type ``som.entitlements.customer_snapshot``) repeats the current version unchanged.
    """

    customer_id: str
    version: int
    previous_version: int
    access: Literal["full", "held", "read_only", "revoked"]
    features: list[str]
    limits: dict[str, int]
    instances: int
    can_create_instances: bool
    writable: bool
    subscriptions: list[str]
    overrides: list[str] = Field(default_factory=list)
    pending: list[PendingEntitlementChange] = Field(default_factory=list)
    effective_at: datetime


class EntitlementCommand(BaseModel):
    """An instruction to the entitlements worker (on ``entitlements.commands``, keyed by customer).

    - ``grant``: an override of ``feature`` (a limit raised to ``value``, or a boolean when ``value``
      is None) for the customer or one ``subscription_id``, from ``starts_at`` until ``until``;
    - ``snapshot``: publish the current sets again (a consumer saw a version gap);
    - ``reconcile``: recompute from the stored subscriptions, catalog and policy, repair drift;
    - ``recompute``: a timer's: re-evaluate at ``at`` (a grace period or an override ends);
    - ``user_add`` / ``user_remove``: ``email`` gets ``role`` on ``subscription_id``, or loses it (audited).
    """

    model_config = ConfigDict(extra="forbid")

    command: Literal["grant", "snapshot", "reconcile", "recompute", "user_add", "user_remove"]
    customer_id: str
    command_id: str
    subscription_id: str | None = None
    feature: str | None = None
    value: int | None = None
    starts_at: datetime | None = None
    until: datetime | None = None
    at: datetime | None = None
    reason: str | None = None
    actor: str = "system"
    email: str | None = None
    role: Literal["owner", "admin", "editor", "reader"] | None = None


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


class EntitlementsApplied(BaseModel):
    """Provisioning reports what it applied (on ``entitlements.applied``, keyed by subscription).

    ``version``: the subscription's entitlement version now in force downstream (an older one
    than already acknowledged changes nothing); or ``instruction_id``: an instruction carried out.
    """

    subscription_id: str
    version: int | None = None
    instruction_id: str | None = None
    applied_at: datetime | None = None


class EntitlementViolation(BaseModel):
    """More running than allowed (on ``entitlements.violation``): ``running`` instances > ``allowed``."""

    subscription_id: str
    customer_id: str | None = None
    kind: Literal["instances"] = "instances"
    allowed: int
    running: int
    instance_ids: list[str]
    detected_at: datetime


class EntitlementInstruction(BaseModel):
    """What provisioning must do (on ``entitlements.instructions``, keyed by subscription), acknowledged
    with ``EntitlementsApplied.instruction_id``: ``block_new_instances`` (suspended or held: existing
    instances stay), ``allow_new_instances`` (lifted), ``data_cleanup`` (the grace period after the end
    is over: delete the subscription's data and resources)."""

    instruction_id: str
    kind: Literal["block_new_instances", "allow_new_instances", "data_cleanup"]
    subscription_id: str
    customer_id: str
    effective_at: datetime


class UsageReported(BaseModel):
    """Usage of a metered feature (on ``usage.reported``, keyed by customer); idempotent by ``usage_id``."""

    usage_id: str
    customer_id: str
    subscription_id: str | None = Field(default=None, description="its billing period is the counting period")
    feature: str
    quantity: int = Field(ge=0)
    occurred_at: datetime


class UsageThresholdReached(BaseModel):
    """A customer's usage of a feature reached 80 or 100 % of the period's limit (once per period)."""

    customer_id: str
    feature: str
    period_start: date
    threshold: int = Field(description="per cent: 80 or 100")
    used: int
    limit: int


class ReplenishmentOrderLine(BaseModel):
    """Units of one SKU at one unit price, and the basis that price was fixed by."""

    sku: str
    quantity: int = Field(ge=1)
    unit_amount: DecimalString
    amount: DecimalString
    price_basis: str = Field(description="catalog price version, volume tier, price list entry, cap")


class ReplenishmentOrder(BaseModel):
    """One cycle of a replenishment subscription to deliver (``orders.replenishment``, keyed by subscription).

    ``order_id`` is ``<subscription>/<cycle>``: a consumer that sees it twice has seen one order.
    ``status`` ``partial``: stock was short and the policy delivers what is in stock.
    """

    order_id: str
    subscription_id: str
    customer_id: str
    plan_id: str
    cycle: int = Field(ge=1)
    due_date: date
    status: Literal["delivered", "partial"]
    quantity_ordered: int
    quantity_delivered: int
    currency: str
    lines: list[ReplenishmentOrderLine]
    subtotal: DecimalString
    invoice_number: str | None = Field(default=None, description="the invoice billing issued for the cycle")
    test: bool = False


class ReplenishmentCycleDelayed(BaseModel):
    """A cycle did not run on its due date: stock was short (``out_of_stock``) or the customer delayed it."""

    subscription_id: str
    customer_id: str
    due_date: date
    next_due: date
    reason: Literal["out_of_stock", "customer_delay", "customer_skip"]
    quantity_ordered: int
    stock: int | None = None


class ReplenishmentCommand(BaseModel):
    """A command to billing about one replenishment subscription (``replenishment.commands``).

    ``run_cycle`` is billing's own timer (one per pending cycle); ``skip_next`` and
    ``delay_next`` come from the customer (``som billing replenishment``).
    """

    model_config = ConfigDict(extra="forbid")

    subscription_id: str
    command_id: str = Field(description="idempotency key of the command")
    params: ReplenishmentParams


class PricingUpdated(BaseModel):
    """A SKU's unit price from ``effective_at`` on (``pricing.updated``, keyed by SKU).

    Billing keeps every entry; a replenishment plan priced by ``price_list`` uses the one in
    force when its cycle runs. The same (sku, currency, effective_at) again replaces the amount.
    """

    sku: str
    currency: str
    unit_amount: DecimalString = Field(gt=0)
    effective_at: datetime
