"""Lifecycle handlers: commands in; state, audit row, timers and events out, in one transaction.

The rules are ``services.lifecycle.domain.decide``; this module maps the wire command onto a
domain command, loads and stores the subscription, and turns the decision into rows and events.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from services.lifecycle.domain import (
    Decision,
    Rejection,
    SubscriptionState,
    decide,
    load_approval_policy,
)
from services.lifecycle.domain.decode import CommandNotUnderstood, commercial_terms, decode_command
from services.lifecycle.domain.timers import TimerKind
from services.lifecycle.store import LifecycleStore, PgLifecycleStore
from shared import timekeeping
from shared.catalog import Catalog, CatalogError
from shared.catalog.change_rules import load_plan_change_rules
from shared.contracts import commands as wire
from shared.contracts import events as ev
from shared.contracts.commands import NOTICE_COMMANDS
from shared.contracts.envelope import CloudEvent, caused_by
from shared.db.uow import UnitOfWork
from shared.messaging import topics
from shared.messaging.runtime import Incoming

log = logging.getLogger("som.lifecycle")
SOURCE = "som/lifecycle"

# Timer kinds that are not lifecycle commands: what firing them means.
TIMER_NOTICES = {
    TimerKind.UPCOMING_CHARGE_NOTICE.value: "upcoming_charge_notice",
    TimerKind.GRACE_PERIOD_END.value: "grace_period_end",
}
DATA_CLEANUP_DUE = "som.subscription.data_cleanup_due"


def current_trace_id() -> str | None:
    """Hex trace id of the current span, for the audit trail."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


# The plan-change rules are the ones billing invoices by: its policy file's `plan_change` section
# (read as a file, not through billing's code; SOM_BILLING_POLICY_PATH points both at another).
PLAN_CHANGE_RULES_PATH = Path(__file__).resolve().parents[1] / "billing" / "config" / "billing_policy.yaml"


class LifecycleHandlers:
    """Handlers of ``subscriptions.commands`` and ``provisioning.instances``."""

    def __init__(
        self,
        catalog: Catalog,
        store: LifecycleStore | None = None,
        plan_change_rules_path: Path | str | None = None,
    ) -> None:
        self.catalog = catalog
        self.store: LifecycleStore = store or PgLifecycleStore()
        self.approval_policy = load_approval_policy()
        self.plan_change_rules = load_plan_change_rules(plan_change_rules_path or PLAN_CHANGE_RULES_PATH)

    # -- commands ------------------------------------------------------------------------------

    async def on_command(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Apply one command, once per idempotency key, however late it comes again."""
        event = incoming.cloud_event()
        cmd: ev.SubscriptionCommand = event.payload(ev.SubscriptionCommand)
        first, stored = await self.store.claim_command_and_load(
            uow.conn, cmd.idempotency_key, cmd.subscription_id
        )
        if not first:
            log.info("command %s already applied: no second effect", cmd.idempotency_key)
            return
        current = SubscriptionState.model_validate(stored["domain"]) if stored else None
        commercial: dict[str, Any] = dict(stored["commercial"]) if stored else commercial_terms(cmd)
        if cmd.command in NOTICE_COMMANDS:
            outcome = await self._notice(uow, event, cmd, current, commercial)
        else:
            try:
                now = await self.store.clock_now(uow.conn, commercial.get("clock", timekeeping.SYSTEM_CLOCK))
                domain_cmd = decode_command(
                    cmd,
                    current,
                    catalog=self.catalog,
                    approval_policy=self.approval_policy,
                    plan_change_rules=self.plan_change_rules,
                )
            except (CommandNotUnderstood, CatalogError, ValidationError) as exc:
                result: Decision | Rejection | None = None
                await self._reject(uow, event, cmd, current, "INVALID_COMMAND", str(exc).splitlines()[0])
            else:
                result = decide(current, domain_cmd, now=now)
            if isinstance(result, Decision):
                await self._apply(uow, event, cmd, result, commercial)
                outcome = "applied"
            else:
                if isinstance(result, Rejection):
                    await self._reject(uow, event, cmd, current, result.code.value, result.message)
                outcome = "rejected"
        await self.store.set_command_outcome(uow.conn, cmd.idempotency_key, outcome)

    async def _apply(
        self,
        uow: UnitOfWork,
        cause: CloudEvent,
        cmd: ev.SubscriptionCommand,
        decision: Decision,
        commercial: dict[str, Any],
    ) -> None:
        state = decision.state
        stored = {"domain": state.model_dump(mode="json"), "commercial": commercial}
        if decision.previous is None:
            customer = commercial.get("customer") or {}
            await self.store.create(
                uow.conn,
                state.subscription_id,
                status=state.status.value,
                channel=state.channel,
                customer_id=state.customer_id or "",
                plan_id=state.plan.plan_id,
                state=stored,
                owner=(customer["customer_id"], customer.get("email"))
                if customer.get("customer_id")
                else None,
            )
            version = 1  # created at version 1: no second write of the same row
        else:
            version = await self.store.update(
                uow.conn,
                state.subscription_id,
                status=state.status.value,
                plan_id=state.plan.plan_id,
                state=stored,
            )
        audit = decision.audit
        await self.store.append_audit(
            uow.conn,
            state.subscription_id,
            from_status=audit.from_status.value if audit.from_status else None,
            to_status=audit.to_status.value,
            command=audit.command.value,
            actor=audit.actor,
            reason=audit.reason,
            channel=state.channel,
            effective_at=audit.effective_at,
            correlation_id=cause.correlationid,
            trace_id=current_trace_id(),
        )
        clock = commercial.get("clock", timekeeping.SYSTEM_CLOCK)
        kinds = sorted(
            {k.value for k in decision.timers_to_cancel} | {t.kind.value for t in decision.timers_to_set}
        )
        if kinds and decision.previous is not None:  # a new subscription has no timers yet
            await self.store.cancel_timers(uow, state.subscription_id, kinds)
        await self.store.schedule_timers(
            uow,
            [
                timekeeping.Timer(
                    subscription_id=state.subscription_id,
                    kind=timer.kind.value,
                    due_at=timer.due_at,
                    clock=clock,
                    topic=topics.SUBSCRIPTIONS_COMMANDS,
                    event_type=ev.SUBSCRIPTION_COMMAND,
                    payload=ev.SubscriptionCommand(
                        subscription_id=state.subscription_id,
                        idempotency_key=timer.idempotency_key,
                        channel=state.channel,
                        effective_at=timer.due_at,
                        actor="system:scheduler",
                        params=wire.params_for(
                            timer.command.value
                            if timer.command is not None
                            else TIMER_NOTICES[timer.kind.value]
                        ),
                    ),
                )
                for timer in decision.timers_to_set
            ],
        )
        data = ev.SubscriptionStateChanged(
            subscription_id=state.subscription_id,
            version=version,
            command=audit.command.value,
            from_status=audit.from_status.value if audit.from_status else None,
            to_status=state.status.value,
            effective_at=audit.effective_at,
            actor=audit.actor,
            reason=audit.reason,
            events=list(decision.events),  # type: ignore[arg-type]  # the domain's events are the contract's
            snapshot=self.snapshot(state, commercial),
        )
        uow.emit(
            topics.SUBSCRIPTIONS_EVENTS,
            caused_by(
                cause,
                type=ev.SUBSCRIPTION_STATE_CHANGED,
                source=SOURCE,
                subject=state.subscription_id,
                data=data,
                discriminator=str(version),
                time=audit.effective_at,
            ),
        )

    def snapshot(self, state: SubscriptionState, commercial: dict[str, Any]) -> ev.SubscriptionSnapshot:
        """The subscription as billing and entitlements see it."""
        customer = commercial.get("customer") or {"customer_id": state.customer_id or "unknown"}
        return ev.SubscriptionSnapshot(
            subscription_id=state.subscription_id,
            status=state.status.value,
            channel=state.channel,
            customer=ev.Customer.model_validate(customer),
            plan_id=state.plan.plan_id,
            quantity=state.quantity,
            billing_interval=state.billing_interval,
            currency=commercial.get("currency", "USD"),
            unit_amount=commercial.get("unit_amount"),
            addons=[ev.SubscriptionItem(plan_id=a.plan.plan_id, quantity=a.quantity) for a in state.addons],
            billing_anchor=state.billing_anchor,
            anchor_day=state.anchor_day,
            current_period_start=state.current_period_start,
            current_period_end=state.current_period_end,
            trial_ends_at=state.trial_ends_at,
            grace_period_ends_at=state.grace_period_ends_at,
            test=bool(commercial.get("test", False)),
            clock=commercial.get("clock"),
            users=[ev.SubscriptionUser.model_validate(u) for u in commercial.get("users") or []],
        )

    async def _notice(
        self,
        uow: UnitOfWork,
        cause: CloudEvent,
        cmd: ev.SubscriptionCommand,
        current: SubscriptionState | None,
        commercial: dict[str, Any],
    ) -> str:
        """A timer that is not a state change: tell the customer, or tell provisioning to clean up."""
        if current is None:
            return "rejected"
        snapshot = self.snapshot(current, commercial)
        if cmd.command == "upcoming_charge_notice":
            topic, type_ = topics.NOTIFICATIONS, ev.UPCOMING_CHARGE_NOTICE
        else:
            topic, type_ = topics.SUBSCRIPTIONS_EVENTS, DATA_CLEANUP_DUE
        notice = ev.SubscriptionNotice(
            subscription_id=current.subscription_id,
            kind=cmd.command,
            due_at=cmd.effective_at,
            snapshot=snapshot,
        )
        uow.emit(
            topic,
            caused_by(
                cause,
                type=type_,
                source=SOURCE,
                subject=current.subscription_id,
                data=notice,
                time=cmd.effective_at,
            ),
        )
        return "notified"

    async def _reject(
        self,
        uow: UnitOfWork,
        cause: CloudEvent,
        cmd: ev.SubscriptionCommand,
        current: SubscriptionState | None,
        code: str,
        message: str,
    ) -> None:
        data = ev.SubscriptionCommandRejected(
            subscription_id=cmd.subscription_id,
            command=cmd.command,
            idempotency_key=cmd.idempotency_key,
            status=current.status.value if current else None,
            reason_code=code,
            message=message,
        )
        log.info("command %s rejected: %s %s", cmd.command, code, message)
        uow.emit(
            topics.SUBSCRIPTIONS_COMMAND_REJECTIONS,
            caused_by(
                cause,
                type=ev.SUBSCRIPTION_COMMAND_REJECTED,
                source=SOURCE,
                subject=cmd.subscription_id,
                data=data,
            ),
        )

    # -- instances reported by provisioning -----------------------------------------------------

    async def on_instance_report(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Record an instance of a subscription as provisioning reports it."""
        event = incoming.cloud_event()
        report: ev.InstanceReported = event.payload(ev.InstanceReported)
        await self.store.record_instance(
            uow.conn, report.subscription_id, report.instance_id, report.status, report.reported_at
        )
