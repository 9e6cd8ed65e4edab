"""Stopping background tasks without waiting forever on one that does not stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], *, timeout: float, log: logging.Logger, owner: str
) -> None:
    """Cancel ``tasks`` and wait up to ``timeout`` seconds for them to end.

    A task still running then (it lost or ignored its cancel) is named in an error and left
    behind: a worker that never finishes stopping holds its partitions and its pod until killed.
    Exceptions of the tasks that ended are retrieved, so none is reported as never retrieved.
    """
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    done, stuck = await asyncio.wait(pending, timeout=timeout)
    for task in done:
        if not task.cancelled():
            task.exception()
    for task in stuck:
        log.error("%s: task %s did not stop within %.0f s of its cancel", owner, task.get_name(), timeout)
