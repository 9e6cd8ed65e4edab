"""Wiring of the billing worker."""

from __future__ import annotations

import asyncio
import logging

from opentelemetry.sdk.trace import TracerProvider

from services.billing.domain import BillingContext, load_context
from services.billing.handlers import BillingHandlers
from shared.catalog import Catalog, cached_catalog
from shared.db.uow import Database
from shared.messaging import topics
from shared.messaging.runtime import Route, Worker
from shared.settings import Settings
from shared.timekeeping import fire_due

NAME = "billing"
log = logging.getLogger("som.billing.scheduler")


def billing_context(catalog: Catalog) -> BillingContext:
    """Catalog, billing policy and tax table as the worker (and ``som billing preview``) use them.

    A customer without a country (the direct channel's orders carry only a region) is not
    taxed: the documents carry a 0 rate. An unknown country stays an error (dead letter).
    """
    ctx = load_context(catalog)
    tax = ctx.tax_table.model_copy(update={"missing_country": "untaxed"})
    return BillingContext(catalog=ctx.catalog, policy=ctx.policy, tax_table=tax)


async def run_billing_scheduler(db: Database, *, poll_seconds: float = 1.0) -> None:
    """Fire billing's due timers (payment attempts, journal entries) forever.

    A transaction is opened only when a timer is due, so an idle worker writes nothing.
    """
    service = f"{db.namespace}{NAME}"
    while True:
        try:
            due = await db.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM timekeeping.timers WHERE service = $1 AND fired_at IS NULL "
                "AND cancelled_at IS NULL AND due_at <= timekeeping.clock_now(clock))",
                service,
            )
            if due:
                while await fire_due(db, NAME) > 0:
                    pass
        except asyncio.CancelledError:
            # Shutdown right after a firing commit woke the outbox relay: give the relay a moment
            # to take that wake-up before the worker cancels it. (On Python 3.11 a cancel that
            # lands together with the wake-up is swallowed by the relay's asyncio.wait_for and
            # its stop() then waits forever; see the report on shared/messaging/relay.py.)
            await asyncio.sleep(0.05)
            raise
        except Exception:  # database down: the timers wait in Postgres; try again next poll
            log.exception("billing scheduler pass failed")
        await asyncio.sleep(poll_seconds)


def build(settings: Settings, db: Database, *, tracer_provider: TracerProvider | None = None) -> Worker:
    """The billing worker: lifecycle changes and payment results in; its scheduler beside."""
    ctx = billing_context(cached_catalog(str(settings.catalog_path) if settings.catalog_path else None))
    handlers = BillingHandlers(ctx)
    routes = [
        Route(topics.SUBSCRIPTIONS_EVENTS, handlers.on_subscription_event),
        Route(topics.PAYMENTS_RESULTS, handlers.on_payment_event),
    ]
    return Worker(NAME, routes, settings=settings, db=db, tracer_provider=tracer_provider,
                  background=[lambda: run_billing_scheduler(db, poll_seconds=settings.scheduler_poll_seconds)])
