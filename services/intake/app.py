"""Declaration of the intake worker: one route per channel's inbound topic, and the STACKIT poller."""

from __future__ import annotations

from pathlib import Path

from shared.contracts.canonical import CHANNELS
from shared.db.uow import Database
from shared.messaging import topics
from shared.service import BackgroundTask, ServiceSpec, Wiring
from shared.settings import Settings

NAME = "intake"


def wire(settings: Settings, db: Database) -> Wiring:
    """Handlers for every inbound topic; with ``stackit_base_url`` set also the STACKIT poller."""
    # Imported here: the registry reads every spec, a worker process builds only its own.
    from services.intake.handlers import IntakeHandlers, inbound_event_id
    from services.intake.pipeline import channel_auth
    from shared.catalog import cached_catalog
    from shared.messaging.runtime import Route

    catalog = cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
    handlers = IntakeHandlers(catalog, auth=channel_auth(settings))
    routes = [Route(topics.inbound(c), handlers.on_inbound, event_id=inbound_event_id) for c in CHANNELS]
    background: list[BackgroundTask] = []
    if settings.stackit_base_url:
        from services.intake.stackit_poller import StackitPoller

        poller = StackitPoller.from_settings(settings, db, catalog=catalog)
        background.append(poller.run_forever)
    return Wiring(routes, background)


SPEC = ServiceSpec(
    name=NAME,
    consumes=tuple(topics.inbound(c) for c in CHANNELS),
    produces=(topics.SUBSCRIPTIONS_COMMANDS, topics.ORDERS_REJECTED),
    migrations=Path(__file__).resolve().parent / "migrations",
    wire=wire,
    background=("stackit_poller (when SOM_STACKIT_BASE_URL is set)",),
)
build = SPEC.build
