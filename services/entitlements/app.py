"""Wiring of the entitlements worker."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from services.entitlements.handlers import EntitlementHandlers
from shared.catalog import cached_catalog
from shared.db.uow import Database
from shared.messaging import topics
from shared.messaging.runtime import Route, Worker
from shared.settings import Settings

NAME = "entitlements"


def build(settings: Settings, db: Database, *, tracer_provider: TracerProvider | None = None) -> Worker:
    """The entitlements worker."""
    handlers = EntitlementHandlers(
        cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
    )
    routes = [Route(topics.SUBSCRIPTIONS_EVENTS, handlers.on_subscription_event)]
    return Worker(NAME, routes, settings=settings, db=db, tracer_provider=tracer_provider)
