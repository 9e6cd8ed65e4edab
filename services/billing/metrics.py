"""Prometheus metrics of the billing worker (the delivery runtime's own are in shared.messaging.metrics)."""

from __future__ import annotations

from prometheus_client import Counter

RENEWALS = Counter("som_renewal_payments_total", "Renewal payment outcomes", ["outcome"])
DOCUMENTS_ISSUED = Counter(
    "som_billing_documents_total", "Invoices and credit notes issued", ["document_type"]
)
PAYMENT_RESULTS = Counter("som_payment_results_total", "Payment results received by billing", ["outcome"])
DUNNING_ACTIONS = Counter(
    "som_dunning_actions_total",
    "Dunning steps: retry_scheduled, past_due, suspended, recovered, immediate_retry",
    ["action"],
)

ALL = (RENEWALS, DOCUMENTS_ISSUED, PAYMENT_RESULTS, DUNNING_ACTIONS)
