"""Wiring of the intake worker: one route per channel's inbound topic, and the STACKIT poller."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from services.intake.handlers import IntakeHandlers, inbound_event_id
from services.intake.pipeline import channel_secrets
from shared.catalog import cached_catalog
from shared.contracts.canonical import CHANNELS
from shared.db.uow import Database
from shared.messaging import topics
from shared.messaging.runtime import Route, Worker
from shared.settings import Settings

NAME = "intake"


def build(settings: Settings, db: Database, *, tracer_provider: TracerProvider | None = None) -> Worker:
    """The intake worker; with ``stackit_base_url`` set it also polls STACKIT in the background."""
    catalog = cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
    handlers = IntakeHandlers(
        catalog, secrets=channel_secrets(settings.stripe_webhook_secret, settings.shopify_webhook_secret)
    )
    routes = [Route(topics.inbound(c), handlers.on_inbound, event_id=inbound_event_id) for c in CHANNELS]
    background: list[Callable[[], Coroutine[Any, Any, None]]] = []
    if settings.stackit_base_url:
        from services.intake.stackit_poller import StackitPoller

        poller = StackitPoller.from_settings(settings, db, catalog=catalog)
        background.append(poller.run_forever)
    return Worker(NAME, routes, settings=settings, db=db, tracer_provider=tracer_provider, background=background)
