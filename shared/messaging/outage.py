"""Pausing while a dependency is down: the worker waits, with backoff, instead of failing messages.

A batch that hits an outage is held in memory and processed again once PostgreSQL answers (and
the broker, when it was the broker); nothing is committed meanwhile, no retry is used up, and
readiness reports not-ready. A metric counts the seconds spent waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from shared.messaging import metrics

log = logging.getLogger("som.runtime")

Probe = Callable[[], Awaitable[bool]]


class OutageGate:
    """Tracks whether the worker is paused for an outage and waits until its dependencies answer."""

    def __init__(self, service: str, probes: dict[str, Probe], *, max_backoff: float = 5.0) -> None:
        self.service = service
        self.probes = probes
        self.max_backoff = max_backoff
        self.paused_since: float | None = None
        self._waiters = 0

    @property
    def paused(self) -> bool:
        """True while some lane waits for a dependency."""
        return self._waiters > 0

    async def answering(self) -> dict[str, bool]:
        """Ask every dependency once (each bounded in time)."""
        results: dict[str, bool] = {}
        for name, probe in self.probes.items():
            try:
                async with asyncio.timeout(2.0):
                    results[name] = bool(await probe())
            except Exception:
                results[name] = False
        return results

    async def wait(self, cause: BaseException) -> bool:
        """Pause until every dependency answers; True if one was really down (not a passing error)."""
        self._waiters += 1
        if self._waiters == 1:
            self.paused_since = time.monotonic()
            metrics.PAUSED.labels(self.service).set(1)
        started = time.monotonic()
        delay = 0.2
        was_down = False
        try:
            while True:
                await asyncio.sleep(delay)
                answers = await self.answering()
                if all(answers.values()):
                    if was_down:
                        log.warning(
                            "dependencies answer again after %.1f s; resuming", time.monotonic() - started
                        )
                    return was_down
                if not was_down:
                    down = ", ".join(k for k, ok in answers.items() if not ok)
                    log.warning(
                        "%s unreachable (%s: %s); consumption paused", down, type(cause).__name__, cause
                    )
                was_down = True
                delay = min(self.max_backoff, delay * 2)
        finally:
            metrics.PAUSED_SECONDS.labels(self.service).inc(time.monotonic() - started)
            self._waiters -= 1
            if self._waiters == 0:
                self.paused_since = None
                metrics.PAUSED.labels(self.service).set(0)
