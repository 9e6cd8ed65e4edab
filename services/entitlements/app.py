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
    """The handlers, the scheduler of its timers (grace ends, override starts and ends), and the
    in-memory projection the check API answers from (``GET /v1/customers/{id}/entitlements``)."""
    # Imported here: the registry reads every spec, a worker process builds only its own.
    from services.entitlements.domain.policy import load_policy
    from services.entitlements.handlers import EntitlementHandlers
    from services.entitlements.projection import EntitlementProjection
    from services.entitlements.sync import SyncHandlers, run_republisher
    from shared.catalog import cached_catalog
    from shared.messaging.runtime import Route
    from shared.timekeeping import run_scheduler

    catalog = cached_catalog(str(settings.catalog_path) if settings.catalog_path else None)
    handlers = EntitlementHandlers(catalog, load_policy(settings.entitlement_policy_path))
    projection = EntitlementProjection(db.pool, catalog)
    sync = SyncHandlers(catalog)
    routes = [
        Route(topics.SUBSCRIPTIONS_EVENTS, handlers.on_subscription_event),
        Route(topics.ENTITLEMENTS_COMMANDS, handlers.on_command),
        Route(topics.ENTITLEMENTS_APPLIED, sync.on_applied),
        Route(topics.PROVISIONING_INSTANCES, sync.on_instance_report),
        Route(topics.USAGE_REPORTED, sync.on_usage),
    ]
    background = [
        lambda: run_scheduler(db, NAME, poll_seconds=settings.scheduler_poll_seconds),
        projection.run,
    ]
    timeout = settings.entitlement_ack_timeout_seconds
    if timeout:  # only where provisioning acknowledges: otherwise every set would be re-sent for ever
        background.append(lambda: run_republisher(db, NAME, timeout))
    return Wiring(routes, background, http=projection.answer)


SPEC = ServiceSpec(
    name=NAME,
    consumes=(
        topics.SUBSCRIPTIONS_EVENTS,
        topics.ENTITLEMENTS_COMMANDS,
        topics.ENTITLEMENTS_APPLIED,
        topics.PROVISIONING_INSTANCES,
        topics.USAGE_REPORTED,
    ),
    produces=(
        topics.ENTITLEMENTS_CHANGED,
        topics.ENTITLEMENTS_CUSTOMERS,
        topics.ENTITLEMENTS_COMMANDS,
        topics.ENTITLEMENTS_VIOLATION,
        topics.ENTITLEMENTS_INSTRUCTIONS,
        topics.ENTITLEMENTS_USAGE,
    ),
    migrations=Path(__file__).resolve().parent / "migrations",
    wire=wire,
    background=("scheduler", "check-api projection", "re-publisher of unacknowledged changes"),
    metrics=metrics.ALL,
)
build = SPEC.build
