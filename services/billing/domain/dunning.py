"""Dunning: when to retry a failed payment, and what a failure does to the subscription. Pure.

Configured in ``billing_policy.yaml`` under ``dunning`` (``retry_after_days: [1, 3, 7]``).
With ``failure_count`` failures so far there are ``len(retry_after_days)`` retries in all:
failure 1 schedules retry 1, ..., failure N schedules retry N; the failure after the
last retry exhausts the schedule. The first failure makes the subscription
``past_due``; exhausting the schedule makes it ``suspended``. A payment-method update
means "retry at once", whatever the schedule says.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from services.billing.domain.policy import DunningPolicy

EXHAUSTED: Literal["exhausted"] = "exhausted"


@dataclass(frozen=True)
class DunningState:
    """The dunning run of one unpaid invoice."""

    failure_count: int
    first_failed_on: date
    last_failed_on: date
    next_retry_on: date | None
    exhausted: bool = False


@dataclass(frozen=True)
class DunningDecision:
    """What to do after an event: when to retry (None = no more retries) and the lifecycle effect."""

    state: DunningState | None
    retry_on: date | None
    lifecycle_effect: str | None


def next_retry(
    policy: DunningPolicy, failure_count: int, failed_on: date, *, first_failed_on: date | None = None
) -> date | Literal["exhausted"]:
    """Date of the next retry after ``failure_count`` failures, or ``"exhausted"``.

    ``failed_on`` is the date of the latest failure. With ``basis: since_first_failure``
    the delay counts from ``first_failed_on`` (default: ``failed_on``) instead.
    """
    if failure_count < 1:
        raise ValueError("failure_count starts at 1")
    delays = policy.retry_after_days
    if failure_count > len(delays):
        return EXHAUSTED
    base = failed_on if policy.basis == "since_last_failure" else (first_failed_on or failed_on)
    retry_on = base + timedelta(days=delays[failure_count - 1])
    # A retry is never scheduled before the failure it follows.
    return max(retry_on, failed_on)


def lifecycle_effect(policy: DunningPolicy, failure_count: int) -> str | None:
    """``past_due`` on the first failure, ``suspended`` once the schedule is exhausted, else None."""
    if failure_count > len(policy.retry_after_days):
        return policy.on_exhausted
    if failure_count == 1:
        return policy.on_first_failure
    return None


def record_failure(policy: DunningPolicy, state: DunningState | None, failed_on: date) -> DunningDecision:
    """A payment attempt failed on ``failed_on``: count it and schedule the next retry."""
    count = 1 if state is None else state.failure_count + 1
    first = failed_on if state is None else state.first_failed_on
    retry = next_retry(policy, count, failed_on, first_failed_on=first)
    retry_on = None if retry == EXHAUSTED else retry
    new = DunningState(
        failure_count=count,
        first_failed_on=first,
        last_failed_on=failed_on,
        next_retry_on=retry_on if isinstance(retry_on, date) else None,
        exhausted=retry == EXHAUSTED,
    )
    return DunningDecision(new, new.next_retry_on, lifecycle_effect(policy, count))


def payment_method_updated(state: DunningState, on: date) -> DunningDecision:
    """The customer updated the payment method: retry at once (even after exhaustion).

    If that attempt fails it is recorded with :func:`record_failure` like any other.
    """
    new = replace(state, next_retry_on=on)
    return DunningDecision(new, on, None)


def record_success(state: DunningState | None) -> DunningDecision:
    """The invoice was paid: dunning ends and a past-due or suspended subscription is active again."""
    return DunningDecision(None, None, "active" if state is not None else None)
