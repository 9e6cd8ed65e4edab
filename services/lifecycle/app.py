"""Wiring of the lifecycle worker."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from services.lifecycle.handlers import LifecycleHandlers
from shared.catalog import cached_catalog
from shared.db.uow import Database
from shared.messaging import topics
from shared.messaging.runtime import Route, Worker
from shared.settings import Settings
from shared.timekeeping import run_scheduler

NAME = "lifecycle"


def build(settings: Settings, db: Database, *, tracer_provider: TracerProvider | None = None) -> Worker:
    """The lifecycle worker."""
    handlers = LifecycleHandlers(
        cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
    )
    routes = [
        Route(topics.SUBSCRIPTIONS_COMMANDS, handlers.on_command),
        Route(topics.PROVISIONING_INSTANCES, handlers.on_instance_report),
    ]
    # The scheduler runs beside the consumer: several lifecycle processes never fire a timer twice.
    return Worker(
        NAME,
        routes,
        settings=settings,
        db=db,
        tracer_provider=tracer_provider,
        background=[lambda: run_scheduler(db, NAME, poll_seconds=settings.scheduler_poll_seconds)],
    )
