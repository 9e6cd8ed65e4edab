"""Wiring of the intake worker: one route per channel's inbound topic."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from services.intake.handlers import IntakeHandlers
from shared.catalog import cached_catalog
from shared.contracts.canonical import CHANNELS
from shared.db.uow import Database
from shared.messaging import topics
from shared.messaging.runtime import Route, Worker, content_id
from shared.settings import Settings

NAME = "intake"


def build(settings: Settings, db: Database, *, tracer_provider: TracerProvider | None = None) -> Worker:
    """The intake worker."""
    handlers = IntakeHandlers(cached_catalog(str(settings.catalog_path) if settings.catalog_path else None))
    routes = [Route(topics.inbound(c), handlers.on_inbound, event_id=content_id) for c in CHANNELS]
    return Worker(NAME, routes, settings=settings, db=db, tracer_provider=tracer_provider)
