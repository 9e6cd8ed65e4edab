"""Replenishment subscriptions in the billing worker: cycles, skip and delay, the SKU price list.

A subscription whose catalog plan has ``replenishment`` terms is not billed per period by the
engine: each delivery cycle is. Billing keeps one ``run_cycle`` timer per subscription (the
pending cycle's due date, on the subscription's clock); when it fires, the cycle checks stock
(the plan's ``stock``, as intake checks new orders), fixes the price by the plan's rule, issues
an invoice whose lines name their price basis, publishes a ``ReplenishmentOrder`` on
``orders.replenishment``, and sets the timer of the next cycle, all in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime

from services.billing import journal, replenishment_store, store
from services.billing.domain import BillingContext, Document
from services.billing.domain.documents import assemble_document
from services.billing.domain.model import TaxProfile
from services.billing.domain.replenishment import (
    CycleOutcome,
    ReplenishmentError,
    ReplenishmentState,
    delay_next,
    end,
    hold,
    invoice_lines,
    release,
    run_cycle,
    set_quantity,
    skip_next,
    start,
)
from services.billing.domain.tax import TaxError
from shared.catalog import Plan
from shared.catalog.replenishment import ReplenishmentTerms
from shared.contracts import events as ev
from shared.contracts import subscription as lc
from shared.contracts.commands import DelayNextParams, RunCycleParams, SkipNextParams
from shared.contracts.envelope import CloudEvent, caused_by
from shared.db.uow import UnitOfWork
from shared.messaging import topics
from shared.messaging.errors import PermanentError, payload_of
from shared.messaging.runtime import Incoming
from shared.timekeeping import cancel_timers, schedule

log = logging.getLogger("som.billing.replenishment")
SOURCE = "som/billing"
TIMER_KIND = "replenishment_cycle"
_KEEP_COMMAND_IDS = 50  # customer commands remembered per subscription (a redelivery applies once)


def _day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def terms_of(ctx: BillingContext, plan_id: str) -> tuple[Plan, ReplenishmentTerms] | None:
    """The plan and its replenishment terms, or None for a plan billed per period."""
    plan = ctx.catalog.find(plan_id)
    if plan is None or plan.replenishment is None:
        return None
    return plan, plan.replenishment


class Replenishments:
    """Replenishment handling of the billing worker (lifecycle changes, commands, price list)."""

    def __init__(self, ctx: BillingContext, issue: Callable[..., Awaitable[ev.InvoiceIssued]]) -> None:
        self.ctx = ctx
        # BillingHandlers.issue: numbers, stores and publishes a document (journal, payment request).
        self._issue = issue

    # -- lifecycle changes ---------------------------------------------------------------------------

    async def on_lifecycle(
        self,
        uow: UnitOfWork,
        cause: CloudEvent,
        change: ev.SubscriptionStateChanged,
        rec: store.BillingRecord,
    ) -> None:
        """Start, resize or end the replenishment as the lifecycle says (the engine does not bill it)."""
        found = terms_of(self.ctx, change.snapshot.plan_id)
        assert found is not None
        _plan, terms = found
        snap = change.snapshot
        state = await replenishment_store.load(uow.conn, snap.subscription_id, lock=True)
        for event in change.events:
            if isinstance(event, lc.SubscriptionActivated) and state is None:
                state = start(
                    subscription_id=snap.subscription_id,
                    customer_id=snap.customer.customer_id,
                    plan_id=snap.plan_id,
                    terms=terms,
                    currency=snap.currency,
                    billing_interval=snap.billing_interval,
                    quantity=snap.quantity,
                    first_due=event.period_start,
                )
                await self._set_timer(uow, state, rec)
            elif state is None or state.ended:
                continue
            elif isinstance(event, lc.QuantityChanged):
                state = set_quantity(state, event.to_quantity)
            elif isinstance(
                event, lc.SubscriptionCancelled | lc.SubscriptionExpired | lc.SubscriptionTerminated
            ):
                state = end(state)
                await cancel_timers(uow, state.subscription_id, [TIMER_KIND])
            elif isinstance(event, lc.SubscriptionPaused | lc.SubscriptionSuspended) and not state.held:
                state = hold(state)
                await cancel_timers(uow, state.subscription_id, [TIMER_KIND])
            elif isinstance(event, lc.SubscriptionResumed | lc.SubscriptionReactivated) and state.held:
                state = release(state, _day(event.effective_at))
                await self._set_timer(uow, state, rec)
        if state is not None:
            await replenishment_store.save(uow.conn, state)

    async def _set_timer(self, uow: UnitOfWork, state: ReplenishmentState, rec: store.BillingRecord) -> None:
        # One pending timer per subscription: the one of the pending cycle.
        await cancel_timers(uow, state.subscription_id, [TIMER_KIND])
        await schedule(
            uow,
            subscription_id=state.subscription_id,
            kind=TIMER_KIND,
            due_at=journal.start_of(state.next_due),
            clock=rec.business_clock,
            topic=topics.REPLENISHMENT_COMMANDS,
            event_type=ev.REPLENISHMENT_COMMAND,
            payload=ev.ReplenishmentCommand(
                subscription_id=state.subscription_id,
                command_id=f"{state.subscription_id}/run/{state.next_due.isoformat()}",
                params=RunCycleParams(due_date=state.next_due),
            ),
        )

    # -- commands --------------------------------------------------------------------------------

    async def on_command(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """``run_cycle`` (timer), ``skip_next`` and ``delay_next`` (customer)."""
        event = incoming.cloud_event()
        if event.type != ev.REPLENISHMENT_COMMAND:
            return
        command = payload_of(event, ev.ReplenishmentCommand, "a replenishment command")
        state = await replenishment_store.load(uow.conn, command.subscription_id, lock=True)
        rec = await store.load(uow.conn, command.subscription_id, lock=True)
        if state is None or rec is None:
            raise PermanentError(
                f"{command.subscription_id} is not a replenishment subscription billing knows"
            )
        found = terms_of(self.ctx, state.plan_id)
        if found is None:
            raise PermanentError(f"plan {state.plan_id} has no replenishment terms in the catalog")
        plan, terms = found
        params = command.params
        try:
            if isinstance(params, RunCycleParams):
                await self._run(uow, event, rec, state, plan, terms, params.due_date)
                return
            if state.ended:
                log.info("%s: %s after the end ignored", state.subscription_id, params.command)
                return
            if command.command_id in state.commands:
                log.info("%s: command %s already applied", state.subscription_id, command.command_id)
                return
            due = state.next_due
            if isinstance(params, SkipNextParams):
                after, reason = skip_next(state, terms), "customer_skip"
            else:
                assert isinstance(params, DelayNextParams)
                after, reason = delay_next(state, params.days), "customer_delay"
        except ReplenishmentError as exc:
            raise PermanentError(f"{command.subscription_id}: {exc}") from exc
        after = after.model_copy(
            update={"commands": (*state.commands, command.command_id)[-_KEEP_COMMAND_IDS:]}
        )
        self._emit_delayed(uow, event, rec, after, due=due, reason=reason, stock=None)
        await self._set_timer(uow, after, rec)
        await replenishment_store.save(uow.conn, after)

    async def _run(
        self,
        uow: UnitOfWork,
        cause: CloudEvent,
        rec: store.BillingRecord,
        state: ReplenishmentState,
        plan: Plan,
        terms: ReplenishmentTerms,
        due: date,
    ) -> None:
        at = cause.time or journal.start_of(due)
        prices = await replenishment_store.price_list(uow.conn, terms.sku, state.currency, at)
        outcome = run_cycle(state, plan, terms, due=due, at=at, stock=plan.stock, price_list=prices)
        if outcome.status == "stale":
            log.info(
                "%s: cycle due %s is not the pending one (%s): nothing run",
                state.subscription_id,
                due,
                state.next_due,
            )
            return
        if outcome.status == "delayed":
            self._emit_delayed(
                uow, cause, rec, outcome.state, due=due, reason="out_of_stock", stock=plan.stock
            )
        else:
            number = await self._invoice(uow, cause, rec, outcome, plan, terms)
            self._emit_order(uow, cause, rec, outcome, plan, number)
        await self._set_timer(uow, outcome.state, rec)
        await replenishment_store.save(uow.conn, outcome.state)

    async def _invoice(
        self,
        uow: UnitOfWork,
        cause: CloudEvent,
        rec: store.BillingRecord,
        outcome: CycleOutcome,
        plan: Plan,
        terms: ReplenishmentTerms,
    ) -> str:
        snap = rec.snapshot
        c = snap.customer
        credit = await store.customer_credit(uow.conn, c.customer_id, outcome.state.currency, lock=True)
        try:
            assembled = assemble_document(
                invoice_lines(outcome, plan, terms),
                subscription_id=snap.subscription_id,
                currency=outcome.state.currency,
                issue_date=outcome.due,
                tax_table=self.ctx.tax_table,
                tax_profile=TaxProfile(country=c.country, region=c.region, tax_exempt=c.tax_exempt),
                payment_terms_days=snap.payment_terms_days,
                account_credit=credit,
            )
        except TaxError as exc:
            raise PermanentError(f"{snap.subscription_id}: {exc}") from exc
        doc: Document = assembled.document
        issued = await self._issue(uow, cause, rec, doc, reason="replenishment")
        if doc.credits_applied > 0:
            await store.record_credit_movement(
                uow.conn,
                customer_id=c.customer_id,
                currency=doc.currency,
                kind="applied",
                amount=-doc.credits_applied,
                balance_after=assembled.account_credit_after,
                subscription_id=snap.subscription_id,
                document_number=issued.document_number,
                business_date=doc.issue_date,
            )
        return issued.document_number

    def _emit_order(
        self,
        uow: UnitOfWork,
        cause: CloudEvent,
        rec: store.BillingRecord,
        outcome: CycleOutcome,
        plan: Plan,
        invoice_number: str,
    ) -> None:
        s = outcome.state
        order = ev.ReplenishmentOrder(
            order_id=f"{s.subscription_id}/{s.cycle}",
            subscription_id=s.subscription_id,
            customer_id=s.customer_id,
            plan_id=plan.id,
            cycle=s.cycle,
            due_date=outcome.due,
            status="partial" if outcome.status == "partial" else "delivered",
            quantity_ordered=outcome.quantity_ordered,
            quantity_delivered=outcome.quantity_delivered,
            currency=s.currency,
            lines=[
                ev.ReplenishmentOrderLine(
                    sku=s.sku,
                    quantity=p.quantity,
                    unit_amount=p.unit_amount,
                    amount=p.amount,
                    price_basis=p.basis,
                )
                for p in outcome.lines
            ],
            subtotal=outcome.total,
            invoice_number=invoice_number,
            test=rec.snapshot.test,
        )
        uow.emit(
            topics.ORDERS_REPLENISHMENT,
            caused_by(
                cause,
                type=ev.REPLENISHMENT_ORDER_CREATED,
                source=SOURCE,
                subject=s.subscription_id,
                data=order,
                discriminator=order.order_id,
                time=cause.time,
            ),
        )
        log.info(
            "%s: replenishment order %s (%s) %s %s",
            s.subscription_id,
            order.order_id,
            order.status,
            order.subtotal,
            s.currency,
        )

    def _emit_delayed(
        self,
        uow: UnitOfWork,
        cause: CloudEvent,
        rec: store.BillingRecord,
        after: ReplenishmentState,
        *,
        due: date,
        reason: str,
        stock: int | None,
    ) -> None:
        data = ev.ReplenishmentCycleDelayed(
            subscription_id=after.subscription_id,
            customer_id=after.customer_id,
            due_date=due,
            next_due=after.next_due,
            reason=reason,  # type: ignore[arg-type]
            quantity_ordered=after.quantity,
            stock=stock,
        )
        uow.emit(
            topics.ORDERS_REPLENISHMENT,
            caused_by(
                cause,
                type=ev.REPLENISHMENT_CYCLE_DELAYED,
                source=SOURCE,
                subject=after.subscription_id,
                data=data,
                discriminator=f"{due.isoformat()}/{reason}/{after.next_due.isoformat()}",
                time=cause.time,
            ),
        )

    # -- price list ------------------------------------------------------------------------------

    async def on_pricing(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Keep a ``pricing.updated`` entry (every one: the one in force is chosen per cycle)."""
        event = incoming.cloud_event()
        if event.type != ev.PRICING_UPDATED:
            return
        update = payload_of(event, ev.PricingUpdated, "a price update")
        if update.effective_at.tzinfo is None:
            raise PermanentError(f"price update of {update.sku}: effective_at needs a time zone")
        await replenishment_store.record_price(
            uow.conn,
            sku=update.sku,
            currency=update.currency.upper(),
            unit_amount=update.unit_amount,
            effective_at=update.effective_at,
            event_id=event.id,
        )
