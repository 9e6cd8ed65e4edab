"""Wiring of the billing worker."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from services.billing.domain import BillingContext, load_context
from services.billing.handlers import BillingHandlers
from shared.catalog import Catalog, cached_catalog
from shared.db.uow import Database
from shared.messaging import topics
from shared.messaging.runtime import Route, Worker
from shared.settings import Settings
from shared.timekeeping import run_scheduler

NAME = "billing"


def billing_context(catalog: Catalog) -> BillingContext:
    """Catalog, billing policy and tax table as the worker (and ``som billing preview``) use them.

    A customer without a country (the direct channel's orders carry only a region) is not
    taxed: the documents carry a 0 rate. An unknown country stays an error (dead letter).
    """
    ctx = load_context(catalog)
    tax = ctx.tax_table.model_copy(update={"missing_country": "untaxed"})
    return BillingContext(catalog=ctx.catalog, policy=ctx.policy, tax_table=tax)


def build(settings: Settings, db: Database, *, tracer_provider: TracerProvider | None = None) -> Worker:
    """The billing worker: lifecycle changes and payment results in; its scheduler beside."""
    ctx = billing_context(cached_catalog(str(settings.catalog_path) if settings.catalog_path else None))
    handlers = BillingHandlers(ctx)
    routes = [
        Route(topics.SUBSCRIPTIONS_EVENTS, handlers.on_subscription_event),
        Route(topics.PAYMENTS_RESULTS, handlers.on_payment_event),
    ]
    return Worker(NAME, routes, settings=settings, db=db, tracer_provider=tracer_provider,
                  background=[lambda: run_scheduler(db, NAME, poll_seconds=settings.scheduler_poll_seconds)])
