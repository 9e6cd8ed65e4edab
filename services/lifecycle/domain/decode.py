"""From the wire command (``SubscriptionCommand``) to a domain command. Pure: no I/O.

The wire names plans by id; the domain works with :class:`PlanRef` (tier, bounds, trial) from
the catalog. Creation's approval mode comes from the approval policy unless the sender fixed it,
and a plan change without a timing follows the plan-change rule (upgrades now, the rest at the
period end). Every field of the typed parameters is either carried over here or read by the
worker (``CreateParams``' commercial terms); ``tests/unit/contracts/test_command_flow.py`` checks
that for every command and timing intake sends.
"""

from __future__ import annotations

from typing import Any

from services.lifecycle.domain.approval import ApprovalPolicy, approval_mode
from services.lifecycle.domain.commands import (
    AddAddon,
    Approve,
    Cancel,
    ChangePlan,
    ChangeQuantity,
    Command,
    ConvertTrial,
    Create,
    Expire,
    MarkPastDue,
    MarkPaymentRecovered,
    Pause,
    Reactivate,
    Reject,
    RemoveAddon,
    Renew,
    Resume,
    StartTrial,
    Suspend,
    Terminate,
    UndoScheduledChange,
)
from services.lifecycle.domain.model import SubscriptionState, plan_ref
from shared.catalog import Catalog
from shared.catalog.change_rules import PlanChangePolicy, rule_for
from shared.contracts import commands as wire
from shared.contracts.commands import Timing, parse_timing
from shared.contracts.events import SubscriptionCommand

SYSTEM_CLOCK = "system"  # the wall clock (shared.timekeeping's name for it; the domain does no I/O)


def commercial_terms(cmd: SubscriptionCommand) -> dict[str, Any]:
    """What the lifecycle keeps beside the domain state for billing: customer, currency, price, clock."""
    p = cmd.params
    if not isinstance(p, wire.CreateParams):  # no subscription yet and no create: nothing is kept
        return {"clock": SYSTEM_CLOCK}
    terms: dict[str, Any] = {
        "customer": p.customer.model_dump(mode="json") if p.customer else None,
        "currency": (p.currency or "USD").upper(),
        "unit_amount": str(p.unit_amount) if p.unit_amount is not None else None,
        "test": p.test,
        "clock": p.clock or SYSTEM_CLOCK,
    }
    if p.users:  # the people the channel named: the snapshot carries them to entitlements
        terms["users"] = [u.model_dump(mode="json") for u in p.users]
    return terms


class CommandNotUnderstood(ValueError):
    """The wire command does not make a domain command (a timer notice is none)."""


# Commands without parameters of their own: wire model -> domain model.
_PLAIN: dict[type[wire._Params], type[Command]] = {
    wire.ApproveParams: Approve,
    wire.RejectParams: Reject,
    wire.ConvertTrialParams: ConvertTrial,
    wire.ResumeParams: Resume,
    wire.MarkPastDueParams: MarkPastDue,
    wire.PaymentRecoveredParams: MarkPaymentRecovered,
    wire.SuspendParams: Suspend,
    wire.ReactivateParams: Reactivate,
    wire.UndoScheduledChangeParams: UndoScheduledChange,
    wire.RenewParams: Renew,
    wire.ExpireParams: Expire,
}


def _cycle_terms(catalog: Catalog, p: wire.CreateParams) -> dict[str, Any]:
    """The billing day terms of a new subscription: the catalog's alignment for its interval wins.

    ``calendar``: the 1st of month/quarter/year; ``subscription``: its own start date (an annual
    item ignores the account's day, as in Kill Bill's default catalog); ``account``: the account's
    day; no alignment configured for the interval: the command's terms as given.
    """
    alignment = catalog.alignment.get(p.billing_interval or "P1M")
    if alignment == "calendar":
        return {"cycle_day": None, "calendar_cycle": True}
    if alignment == "subscription":
        return {"cycle_day": None, "calendar_cycle": False}
    return {"cycle_day": p.cycle_day, "calendar_cycle": p.calendar_cycle and alignment is None}


def decode_command(
    cmd: SubscriptionCommand,
    current: SubscriptionState | None,
    *,
    catalog: Catalog,
    approval_policy: ApprovalPolicy,
    plan_change_rules: PlanChangePolicy | None = None,
) -> Command:
    """The domain command ``cmd`` means for the subscription in ``current`` (``None``: not created yet).

    Raises :class:`CommandNotUnderstood`, ``CatalogError`` (unknown plan) or pydantic's
    ``ValidationError`` (values the domain refuses).
    """
    common = {
        "subscription_id": cmd.subscription_id,
        "idempotency_key": cmd.idempotency_key,
        "actor": cmd.actor,
        "reason": cmd.reason,
        "effective_at": cmd.effective_at,
    }
    p = cmd.params
    plain = _PLAIN.get(type(p))
    if plain is not None:
        return plain(**common)  # type: ignore[arg-type]
    if isinstance(p, wire.CreateParams):
        plan = catalog.plan(p.plan_id)
        account = p.customer.account_id if p.customer else None
        mode = p.approval or approval_mode(
            approval_policy,
            channel=cmd.channel,
            plan_id=plan.id,
            account_id=account,
            on=cmd.effective_at.date(),
        )
        return Create(
            **common,  # type: ignore[arg-type]
            channel=cmd.channel,
            account_id=account,
            customer_id=p.customer.customer_id if p.customer else None,
            plan=plan_ref(plan),
            quantity=p.quantity if p.quantity is not None else plan.quantity.min,
            billing_interval=p.billing_interval or "P1M",  # type: ignore[arg-type]  # Create validates it
            approval=mode,
            trial_days=None if p.trial else 0,  # None: the plan's trial
            **_cycle_terms(catalog, p),
        )
    if isinstance(p, wire.ChangePlanParams):
        plan = catalog.plan(p.plan_id)
        if p.billing_interval is not None and p.billing_interval not in plan.billing_intervals:
            raise CommandNotUnderstood(f"plan {plan.id} has no {p.billing_interval} price")
        target = plan_ref(plan)
        timing = p.timing
        if timing is None and current is not None and plan_change_rules is not None:
            # The same pair and class rules billing reads (billing_policy.yaml, plan_change).
            rule = rule_for(plan_change_rules, catalog, current.plan.plan_id, plan.id)
            timing = Timing(parse_timing(rule.timing))
        if timing is None:  # without rules: upgrades (and sidegrades) now, the rest at period end
            upgrade = current is None or target.tier >= current.plan.tier
            timing = Timing.IMMEDIATE if upgrade else Timing.PERIOD_END
        return ChangePlan(
            **common,  # type: ignore[arg-type]
            plan=target,
            timing=timing,
            quantity=p.quantity,
            invoice=p.invoice,
            billing_interval=p.billing_interval,  # type: ignore[arg-type]  # checked against the plan's prices
            keep_anchor=plan_change_rules is not None and plan_change_rules.interval_change_anchor == "keep",
        )
    if isinstance(p, wire.ChangeQuantityParams):
        return ChangeQuantity(**common, quantity=p.quantity, timing=p.timing, invoice=p.invoice)  # type: ignore[arg-type]
    if isinstance(p, wire.AddAddonParams):
        addon = plan_ref(catalog.plan(p.addon_plan_id))
        return AddAddon(**common, addon=addon, quantity=p.quantity)  # type: ignore[arg-type]
    if isinstance(p, wire.RemoveAddonParams):
        return RemoveAddon(**common, addon_plan_id=p.addon_plan_id)  # type: ignore[arg-type]
    if isinstance(p, wire.PauseParams):
        return Pause(**common, resume_on=p.resume_on)  # type: ignore[arg-type]
    if isinstance(p, wire.CancelParams):
        return Cancel(**common, timing=p.timing)  # type: ignore[arg-type]
    if isinstance(p, wire.StartTrialParams):
        return StartTrial(**common, trial_days=p.trial_days)  # type: ignore[arg-type]
    if isinstance(p, wire.TerminateParams):
        return Terminate(**common, grace_period_days=p.grace_period_days)  # type: ignore[arg-type]
    raise CommandNotUnderstood(f"{p.command} is a notice, not a lifecycle command")
