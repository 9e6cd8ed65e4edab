"""Declaration of the lifecycle worker: commands and instance reports in, its timer scheduler beside."""

from __future__ import annotations

from pathlib import Path

from shared.db.uow import Database
from shared.messaging import topics
from shared.service import ServiceSpec, Wiring
from shared.settings import Settings

NAME = "lifecycle"


def wire(settings: Settings, db: Database) -> Wiring:
    """The lifecycle handlers and the scheduler of its timers."""
    # Imported here: the registry reads every spec, a worker process builds only its own.
    from services.lifecycle.handlers import LifecycleHandlers
    from shared.catalog import cached_catalog
    from shared.messaging.runtime import Route
    from shared.timekeeping import run_scheduler

    handlers = LifecycleHandlers(
        cached_catalog(str(settings.catalog_path) if settings.catalog_path else None),
        plan_change_rules_path=settings.charge_policy_path,
    )
    routes = [
        Route(topics.SUBSCRIPTIONS_COMMANDS, handlers.on_command),
        Route(topics.PROVISIONING_INSTANCES, handlers.on_instance_report),
    ]
    # The scheduler runs beside the consumer: several lifecycle processes never fire a timer twice.
    return Wiring(routes, [lambda: run_scheduler(db, NAME, poll_seconds=settings.scheduler_poll_seconds)])


SPEC = ServiceSpec(
    name=NAME,
    consumes=(topics.SUBSCRIPTIONS_COMMANDS, topics.PROVISIONING_INSTANCES),
    produces=(topics.SUBSCRIPTIONS_EVENTS, topics.SUBSCRIPTIONS_COMMAND_REJECTIONS, topics.NOTIFICATIONS),
    migrations=Path(__file__).resolve().parent / "migrations",
    wire=wire,
    background=("scheduler",),
)
build = SPEC.build
