"""Wiring of the billing worker."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from services.billing.handlers import BillingHandlers
from shared.catalog import cached_catalog
from shared.db.uow import Database
from shared.messaging import topics
from shared.messaging.runtime import Route, Worker
from shared.settings import Settings

NAME = "billing"


def build(settings: Settings, db: Database, *, tracer_provider: TracerProvider | None = None) -> Worker:
    """The billing worker."""
    handlers = BillingHandlers(cached_catalog(str(settings.catalog_path) if settings.catalog_path else None))
    routes = [Route(topics.SUBSCRIPTIONS_EVENTS, handlers.on_subscription_event)]
    return Worker(NAME, routes, settings=settings, db=db, tracer_provider=tracer_provider)
