"""The pure billing domain: proration, invoices and credit notes, tax, dunning, revenue recognition.

No I/O and no clock reads: every date is passed in. The billing worker loads the
configuration once (:func:`load_context`), keeps a :class:`BillingState` per
subscription, and calls :func:`apply` (or :func:`preview`, the same function) with a
command; it numbers and publishes the documents of the outcome and persists its state.
"""

from __future__ import annotations

from pathlib import Path

from services.billing.domain.documents import (
    AssembledDocument,
    apply_account_credit,
    assemble_document,
    due_date,
    to_invoice_issued,
)
from services.billing.domain.dunning import (
    DunningDecision,
    DunningState,
    next_retry,
    payment_method_updated,
    record_failure,
    record_success,
)
from services.billing.domain.engine import (
    Activate,
    AddAddon,
    AddOneOff,
    AddSetupCredit,
    BillingCommand,
    BillingContext,
    BillingOutcome,
    Cancel,
    ChangePlan,
    ChangeQuantity,
    InvoicePending,
    Pause,
    RemoveAddon,
    Renew,
    Resume,
    apply,
    new_billing_state,
    preview,
    state_from_snapshot,
)
from services.billing.domain.model import (
    BASE_ITEM,
    BillingError,
    BillingState,
    Document,
    Item,
    Line,
    NoChange,
    TaxProfile,
)
from services.billing.domain.policy import BillingPolicy, load_billing_policy
from services.billing.domain.proration import ProrationFraction, prorate, split_by_days, unused_credit
from services.billing.domain.revenue import (
    JournalEntry,
    format_revenue_schedule,
    journal_on_issue,
    recognition_entries,
    revenue_schedule,
)
from services.billing.domain.tax import TaxTable, load_tax_table
from shared.catalog import Catalog, load_catalog


def load_context(
    catalog: Catalog | None = None,
    *,
    policy_path: Path | str | None = None,
    tax_rates_path: Path | str | None = None,
) -> BillingContext:
    """Catalog, billing policy and tax table (the packaged defaults unless paths are given)."""
    return BillingContext(
        catalog=catalog or load_catalog(),
        policy=load_billing_policy(policy_path),
        tax_table=load_tax_table(tax_rates_path),
    )


__all__ = [
    "BASE_ITEM",
    "Activate",
    "AddAddon",
    "AddOneOff",
    "AddSetupCredit",
    "AssembledDocument",
    "BillingCommand",
    "BillingContext",
    "BillingError",
    "BillingOutcome",
    "BillingPolicy",
    "BillingState",
    "Cancel",
    "ChangePlan",
    "ChangeQuantity",
    "Document",
    "DunningDecision",
    "DunningState",
    "InvoicePending",
    "Item",
    "JournalEntry",
    "Line",
    "NoChange",
    "Pause",
    "ProrationFraction",
    "RemoveAddon",
    "Renew",
    "Resume",
    "TaxProfile",
    "TaxTable",
    "apply",
    "apply_account_credit",
    "assemble_document",
    "due_date",
    "format_revenue_schedule",
    "journal_on_issue",
    "load_billing_policy",
    "load_context",
    "load_tax_table",
    "new_billing_state",
    "next_retry",
    "payment_method_updated",
    "preview",
    "prorate",
    "recognition_entries",
    "record_failure",
    "record_success",
    "revenue_schedule",
    "split_by_days",
    "state_from_snapshot",
    "to_invoice_issued",
    "unused_credit",
]
