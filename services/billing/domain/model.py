"""Billing documents and the billing state of one subscription. Pure data, no I/O.

Sign convention: every amount is seen from the customer's side. A positive amount is
owed by the customer (a charge); a negative amount is owed to the customer (a credit).
Invoices have a total >= 0; a document whose total is negative is a credit note.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.contracts.commands import Timing as SharedTiming
from shared.money import DecimalString, is_exact, normalize_currency

LineKind = Literal["recurring", "proration_credit", "proration_charge", "one_off", "setup_credit"]
DocumentType = Literal["invoice", "credit_note"]
# When a change takes effect: the one vocabulary of all services (immediate | period_end).
Timing = SharedTiming
Invoicing = Literal["pending", "invoice_immediately"]
Settlement = Literal["refund", "account_credit"]

BASE_ITEM = "base"
"""``item_id`` of a subscription's base plan; add-ons use their own item ids."""

ZERO = Decimal(0)


class BillingError(ValueError):
    """A billing command that cannot be applied to the subscription's billing state."""


class NoChange(BillingError):
    """The command asks for terms billing already has: nothing to bill."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Line(_Frozen):
    """One line of an invoice or credit note.

    ``amount`` is exact in the document currency. For a recurring line it is
    ``unit_amount * quantity``; for a proration line it is that full-period amount
    times the proration fraction, rounded half-up once, on this line.
    """

    kind: LineKind
    description: str
    item_id: str | None = None
    plan_id: str | None = None
    service_period_start: date | None = None
    service_period_end: date | None = None
    quantity: int = 1
    unit_amount: DecimalString
    amount: DecimalString
    tax_rate: DecimalString = ZERO
    tax_amount: DecimalString = ZERO
    price_basis: str | None = Field(
        default=None,
        description="what fixed the unit price (replenishment: catalog version, tier, price list, cap)",
    )
    charge_id: str | None = Field(default=None, description="ledger id of the charge this line created")
    credits_charge_id: str | None = Field(
        default=None, description="ledger id of the charge this line credits"
    )

    @model_validator(mode="after")
    def _period(self) -> Line:
        s, e = self.service_period_start, self.service_period_end
        if (s is None) != (e is None):
            raise ValueError("service period needs both start and end, or neither")
        if s is not None and e is not None and e <= s:
            raise ValueError(f"empty service period [{s}, {e})")
        return self

    @property
    def total(self) -> Decimal:
        """Amount plus tax of this line."""
        return self.amount + self.tax_amount


class Document(_Frozen):
    """An invoice or a credit note, ready for the worker to number and publish.

    Invariants (checked on construction): ``subtotal`` = sum of line amounts,
    ``tax`` = sum of line taxes, ``total`` = ``subtotal + tax``,
    ``amount_due = total - credits_applied`` (never negative).
    """

    document_type: DocumentType
    document_number: str | None = Field(default=None, description="gapless, assigned by the worker")
    subscription_id: str
    currency: str
    issue_date: date
    due_date: date
    lines: tuple[Line, ...]
    subtotal: DecimalString
    tax: DecimalString
    total: DecimalString
    credits_applied: DecimalString = ZERO
    amount_due: DecimalString = ZERO
    refund_amount: DecimalString = Field(default=ZERO, description="credit note: paid back to the customer")
    credit_to_account: DecimalString = Field(default=ZERO, description="credit note: added to account credit")

    @model_validator(mode="after")
    def _totals(self) -> Document:
        subtotal = sum((line.amount for line in self.lines), ZERO)
        tax = sum((line.tax_amount for line in self.lines), ZERO)
        if subtotal != self.subtotal or tax != self.tax or self.total != subtotal + tax:
            raise ValueError("document totals do not match its lines")
        if self.document_type == "invoice":
            if self.total < 0:
                raise ValueError("an invoice cannot have a negative total (issue a credit note)")
            if not ZERO <= self.credits_applied <= self.total:
                raise ValueError("credits_applied must lie between 0 and the total")
            if self.amount_due != self.total - self.credits_applied:
                raise ValueError("amount_due must equal total - credits_applied")
            if self.refund_amount or self.credit_to_account:
                raise ValueError("an invoice has no refund or account credit settlement")
        else:
            if self.total > 0:
                raise ValueError("a credit note cannot have a positive total")
            if self.credits_applied or self.amount_due:
                raise ValueError("a credit note has nothing due")
            if self.refund_amount < 0 or self.credit_to_account < 0:
                raise ValueError("settlement amounts are not negative")
            if self.refund_amount + self.credit_to_account != -self.total:
                raise ValueError("a credit note's settlement must equal its total")
        for amount in (self.subtotal, self.tax, self.total, self.credits_applied, self.amount_due):
            if not is_exact(amount, self.currency):
                raise ValueError(f"{amount} is not exact in {self.currency}")
        return self


class TaxProfile(_Frozen):
    """Where the customer is taxed, and whether at all."""

    country: str | None = None
    region: str | None = Field(default=None, description="ISO 3166-2 subdivision, e.g. US-CA")
    tax_exempt: bool = False


class Item(_Frozen):
    """A priced item of a subscription: the base plan or an add-on.

    ``price_date`` is the date whose catalog price version a grandfathered renewal
    bills: the day this item (this plan) started on the subscription.
    ``unit_amount`` overrides the catalog (enterprise contracts).
    """

    item_id: str
    plan_id: str
    quantity: int = 1
    unit_amount: DecimalString | None = None
    price_date: date
    arrears_from: date | None = Field(
        default=None, description="in-arrears item: first day served and not yet billed (None: not accruing)"
    )

    @field_validator("quantity")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("quantity must be at least 1")
        return v


class ChargedLine(_Frozen):
    """What was actually charged for an item over a service period, and how much was credited back.

    Credits for unused time are prorated from this line's own amount and service
    period and never exceed ``amount - credited``.
    """

    charge_id: str
    item_id: str
    plan_id: str
    quantity: int
    unit_amount: DecimalString
    amount: DecimalString
    service_period_start: date
    service_period_end: date
    credited: DecimalString = ZERO
    credited_from: date | None = Field(default=None, description="earliest day credited back")
    period_start: date | None = Field(default=None, description="billing period the line was charged in")
    period_end: date | None = None

    @property
    def period(self) -> tuple[date, date] | None:
        """The billing period the line was charged in, when recorded."""
        if self.period_start is None or self.period_end is None:
            return None
        return self.period_start, self.period_end

    def covers(self, day: date) -> bool:
        """True when ``day`` is charged by this line and not credited back."""
        end = self.credited_from if self.credited_from is not None else self.service_period_end
        return self.service_period_start <= day < min(end, self.service_period_end)


class ScheduledChange(_Frozen):
    """An end-of-term change: the item set (and interval) in force from ``effective_on``."""

    effective_on: date
    items: tuple[Item, ...]
    billing_interval: str | None = None
    reason: str


class PauseInterval(_Frozen):
    """A closed pause ``[start, end)``: no service, nothing billed."""

    start: date
    end: date


class BillingState(_Frozen):
    """Everything billing keeps about one subscription (the worker persists it as JSON)."""

    subscription_id: str
    currency: str
    billing_interval: str
    billing_anchor: date
    anchor_day: int | None = Field(default=None, description="day of month boundaries return to")
    items: tuple[Item, ...]
    tax_profile: TaxProfile = Field(default_factory=TaxProfile)
    payment_terms_days: int = 0
    charged: tuple[ChargedLine, ...] = ()
    pending_adjustments: tuple[Line, ...] = ()
    charged_through: date | None = None
    paused_since: date | None = None
    pauses: tuple[PauseInterval, ...] = ()
    scheduled_change: ScheduledChange | None = None
    cancel_at: date | None = None
    cancelled_on: date | None = None
    next_charge_seq: int = 1

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        return normalize_currency(v)

    @field_validator("payment_terms_days")
    @classmethod
    def _terms(cls, v: int) -> int:
        if v < 0:
            raise ValueError("payment terms cannot be negative")
        return v

    @model_validator(mode="after")
    def _items(self) -> BillingState:
        ids = [i.item_id for i in self.items]
        if len(ids) != len(set(ids)):
            raise ValueError("item ids must be unique")
        for i in self.items:
            if i.unit_amount is not None and not is_exact(i.unit_amount, self.currency):
                raise ValueError(f"price override {i.unit_amount} is not exact in {self.currency}")
        return self

    def item(self, item_id: str) -> Item:
        """The item with this id; raises :class:`BillingError` if there is none."""
        for i in self.items:
            if i.item_id == item_id:
                return i
        raise BillingError(f"subscription {self.subscription_id} has no item {item_id!r}")
