"""Declaration of the entitlements worker."""

from __future__ import annotations

from pathlib import Path

from services.entitlements import metrics
from shared.db.uow import Database
from shared.messaging import topics
from shared.service import ServiceSpec, Wiring
from shared.settings import Settings

NAME = "entitlements"


def wire(settings: Settings, db: Database) -> Wiring:
    """The entitlement handlers (no background task)."""
    # Imported here: the registry reads every spec, a worker process builds only its own.
    from services.entitlements.handlers import EntitlementHandlers
    from shared.catalog import cached_catalog
    from shared.messaging.runtime import Route

    handlers = EntitlementHandlers(
        cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
    )
    return Wiring([Route(topics.SUBSCRIPTIONS_EVENTS, handlers.on_subscription_event)])


SPEC = ServiceSpec(
    name=NAME,
    consumes=(topics.SUBSCRIPTIONS_EVENTS,),
    produces=(topics.ENTITLEMENTS_CHANGED,),
    migrations=Path(__file__).resolve().parent / "migrations",
    wire=wire,
    metrics=metrics.ALL,
)
build = SPEC.build
