"""The worker set: every service's spec, and what is derived from them (topics, migrations, consumers).

Importing this module also registers the specs with the shared readers that take no table of their
own (``shared.messaging.topics.CONSUMERS``, ``shared.db.migrations.COMPONENTS``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

from services.billing.app import SPEC as BILLING
from services.entitlements.app import SPEC as ENTITLEMENTS
from services.intake.app import SPEC as INTAKE
from services.lifecycle.app import SPEC as LIFECYCLE
from shared.db import migrations
from shared.db.uow import Database
from shared.messaging import topics
from shared.messaging.runtime import Worker
from shared.service import ServiceSpec
from shared.settings import Settings

Builder = Callable[..., Worker]
SPECS: tuple[ServiceSpec, ...] = (INTAKE, LIFECYCLE, BILLING, ENTITLEMENTS)
WORKERS: tuple[str, ...] = tuple(s.name for s in SPECS)


def spec(name: str) -> ServiceSpec:
    """The spec of a worker by name; ``KeyError`` for an unknown name."""
    for s in SPECS:
        if s.name == name:
            return s
    raise KeyError(name)


def builder(name: str) -> Builder:
    """The ``build`` function of a worker."""
    return spec(name).build


def build_worker(
    name: str, settings: Settings, db: Database, *, tracer_provider: TracerProvider | None = None
) -> Worker:
    """Build one worker by name."""
    return spec(name).build(settings, db, tracer_provider=tracer_provider)


def consumers() -> dict[str, tuple[str, ...]]:
    """Logical topics each worker consumes, by worker name (one consumer group each)."""
    return {s.name: s.consumes for s in SPECS}


def migration_components() -> list[tuple[str, Path]]:
    """Migration folders in the order they run: the shared schema, then each service's."""
    return [migrations.SHARED_COMPONENT, *((s.name, s.migrations) for s in SPECS)]


def all_topics(
    namespace: str, default_partitions: int, group_of: Callable[[str], str]
) -> list[topics.TopicSpec]:
    """Every topic the worker set needs: main topics plus each consumer's retry and dead-letter topics."""
    return topics.all_topics(namespace, default_partitions, group_of, consumers())


async def migrate_dsn(dsn: str) -> list[migrations.Migration]:
    """Apply the shared and every service's migrations."""
    return await migrations.migrate_dsn(dsn, migration_components())


topics.CONSUMERS.update(consumers())
for _name, _folder in migration_components()[1:]:
    migrations.register(_name, _folder)
