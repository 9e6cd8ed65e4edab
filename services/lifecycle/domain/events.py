"""Domain events: what happened, in the past tense, each with from/to status, effective time, actor, reason.

A decision carries one or more events (e.g. a renewal that applies a scheduled plan change carries
``PlanChanged`` then ``SubscriptionRenewed``). They are the shared contract itself
(:mod:`shared.contracts.subscription`): the worker publishes them unchanged in
``SubscriptionStateChanged.events``, where ``type`` discriminates them.
"""

from __future__ import annotations

from shared.contracts.subscription import (
    AddOnAdded,
    AddOnRemoved,
    CancellationRevoked,
    CancellationScheduled,
    DomainEvent,
    PaymentRecovered,
    PlanChanged,
    PlanChangeScheduled,
    QuantityChanged,
    ScheduledPlanChangeDropped,
    SubscriptionActivated,
    SubscriptionApproved,
    SubscriptionCancelled,
    SubscriptionCreated,
    SubscriptionEvent,
    SubscriptionExpired,
    SubscriptionPastDue,
    SubscriptionPaused,
    SubscriptionReactivated,
    SubscriptionRejected,
    SubscriptionRenewed,
    SubscriptionResumed,
    SubscriptionSuspended,
    SubscriptionTerminated,
    TrialConverted,
    TrialStarted,
)

__all__ = [
    "AddOnAdded",
    "AddOnRemoved",
    "CancellationRevoked",
    "CancellationScheduled",
    "DomainEvent",
    "PaymentRecovered",
    "PlanChangeScheduled",
    "PlanChanged",
    "QuantityChanged",
    "ScheduledPlanChangeDropped",
    "SubscriptionActivated",
    "SubscriptionApproved",
    "SubscriptionCancelled",
    "SubscriptionCreated",
    "SubscriptionEvent",
    "SubscriptionExpired",
    "SubscriptionPastDue",
    "SubscriptionPaused",
    "SubscriptionReactivated",
    "SubscriptionRejected",
    "SubscriptionRenewed",
    "SubscriptionResumed",
    "SubscriptionSuspended",
    "SubscriptionTerminated",
    "TrialConverted",
    "TrialStarted",
]
