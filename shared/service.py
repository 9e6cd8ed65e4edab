"""One declaration per service: what a worker consumes and produces, its migrations, background tasks
and metrics. ``services/<name>/app.py`` exports one :class:`ServiceSpec`; ``services/registry.py``
collects them, and topic creation, migrations, consumer lag and ``som up`` read them from there.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runtime pulls in FastStream: only a build needs it
    from opentelemetry.sdk.trace import TracerProvider

    from shared.db.uow import Database
    from shared.health import HttpRoutes
    from shared.messaging.runtime import Route, Worker
    from shared.settings import Settings

BackgroundTask = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Wiring:
    """What a service's ``wire`` function builds from settings and a database: routes and background tasks."""

    routes: list[Route]
    background: list[BackgroundTask] = field(default_factory=list)
    http: HttpRoutes | None = None  # GET routes the worker's HTTP server answers beside the probes


@dataclass(frozen=True)
class ServiceSpec:
    """A worker as declared once.

    ``consumes`` and ``produces`` are logical topic names (without namespace); ``wire`` builds the
    handlers for ``consumes`` (one route per topic) and the background tasks named in
    ``background``; ``metrics`` are the service's own prometheus metrics objects.
    """

    name: str
    consumes: tuple[str, ...]
    produces: tuple[str, ...]
    migrations: Path
    wire: Callable[[Settings, Database], Wiring]
    background: tuple[str, ...] = ()
    metrics: tuple[Any, ...] = ()

    def build(
        self, settings: Settings, db: Database, *, tracer_provider: TracerProvider | None = None
    ) -> Worker:
        """The worker process's app: the wiring's routes and background tasks under this spec's name.

        Raises ``ValueError`` when the routes do not cover exactly the declared ``consumes``: topic
        creation and consumer-lag reporting trust the declaration.
        """
        from shared.messaging.runtime import Worker

        wiring = self.wire(settings, db)
        routed = sorted(r.topic for r in wiring.routes)
        if routed != sorted(self.consumes):
            raise ValueError(
                f"{self.name}: routes {routed} differ from the declared topics {sorted(self.consumes)}"
            )
        worker = Worker(
            self.name,
            wiring.routes,
            settings=settings,
            db=db,
            tracer_provider=tracer_provider,
            background=wiring.background,
        )
        worker.http = wiring.http
        return worker
