"""Declaration of the intake worker: one route per channel's inbound topic, and the STACKIT poller."""

from __future__ import annotations

from pathlib import Path

from services.intake.vendors import metrics as vendor_metrics
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
    from services.intake.vendors.fulfilment import FulfilmentDelivery, FulfilmentHandlers
    from services.intake.vendors.wiring import vendor_set
    from shared.catalog import cached_catalog
    from shared.messaging.runtime import Route

    catalog = cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
    vendors = vendor_set(settings, catalog=catalog)
    handlers = IntakeHandlers(
        catalog,
        auth=channel_auth(settings),
        lookups=vendors.lookups,
        azure_operations=vendors.azure_operations,
    )
    routes = [Route(topics.inbound(c), handlers.on_inbound, event_id=inbound_event_id) for c in CHANNELS]
    # Outbound fulfilment: the lifecycle's changes become vendor calls (recorded only for channels
    # with a configured vendor client; see docs/intake-vendors.md).
    fulfil = FulfilmentHandlers(set(vendors.fulfilment), vendors.options)
    routes.append(Route(topics.SUBSCRIPTIONS_EVENTS, fulfil.on_state_changed, skips=fulfil.skips))
    routes.append(
        Route(topics.SUBSCRIPTIONS_COMMAND_REJECTIONS, fulfil.on_command_rejected, skips=fulfil.skips)
    )
    background: list[BackgroundTask] = []
    if vendors.fulfilment and settings.fulfilment_delivery:
        delivery = FulfilmentDelivery(
            db,
            vendors.fulfilment,
            poll_seconds=settings.fulfilment_poll_seconds,
            lease_seconds=settings.fulfilment_lease_seconds,
            retry_seconds=settings.fulfilment_retry_seconds,
        )
        background.append(delivery.run_forever)
    if settings.stackit_base_url:
        from services.intake.stackit_poller import StackitPoller

        poller = StackitPoller.from_settings(settings, db, catalog=catalog)
        background.append(poller.run_forever)
    return Wiring(routes, background)


SPEC = ServiceSpec(
    name=NAME,
    consumes=(
        *(topics.inbound(c) for c in CHANNELS),
        topics.SUBSCRIPTIONS_EVENTS,
        topics.SUBSCRIPTIONS_COMMAND_REJECTIONS,
    ),
    produces=(topics.SUBSCRIPTIONS_COMMANDS, topics.ORDERS_REJECTED, topics.CHANNELS_DEADLINE_MISSED),
    migrations=Path(__file__).resolve().parent / "migrations",
    wire=wire,
    background=(
        "stackit_poller (when SOM_STACKIT_BASE_URL is set)",
        "vendor call delivery (when a vendor fulfilment client is configured)",
    ),
    metrics=vendor_metrics.ALL,
)
build = SPEC.build
