"""The worker set: name -> builder."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider

from shared.db.uow import Database
from shared.messaging.runtime import Worker
from shared.settings import Settings

Builder = Callable[..., Worker]
WORKERS: tuple[str, ...] = ("intake", "lifecycle", "billing", "entitlements")


def builder(name: str) -> Builder:
    """The ``build`` function of a worker (imported lazily so one worker loads only its code)."""
    import importlib

    if name not in WORKERS:
        raise KeyError(name)
    module = importlib.import_module(f"services.{name}.app")
    return module.build  # type: ignore[no-any-return]


def build_worker(
    name: str, settings: Settings, db: Database, *, tracer_provider: TracerProvider | None = None
) -> Worker:
    """Build one worker by name."""
    return builder(name)(settings, db, tracer_provider=tracer_provider)
