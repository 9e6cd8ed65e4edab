"""Named fault points, armed only by tests (in process) or ``SOM_FAULTS`` (in a subprocess).

They let the tests show what the system does when the database is unavailable or a
worker dies between its database commit and its publish, without mocking either.
``SOM_FAULTS="after_commit:crash"`` makes a worker exit hard right after its first commit.
"""

from __future__ import annotations

import os
from collections import defaultdict


class FaultInjector:
    """Counts down armed faults per point."""

    def __init__(self) -> None:
        self._armed: dict[str, int] = defaultdict(int)
        for spec in filter(None, os.environ.get("SOM_FAULTS", "").split(",")):
            point, _, times = spec.partition(":")
            self._armed[point.strip()] += int(times) if times.strip().isdigit() else 1

    def arm(self, point: str, times: int = 1) -> None:
        """Make ``point`` fire on its next ``times`` checks."""
        self._armed[point] += times

    def disarm(self) -> None:
        """Forget every armed fault."""
        self._armed.clear()

    def fires(self, point: str) -> bool:
        """True (and count down) when ``point`` is armed."""
        if self._armed.get(point, 0) > 0:
            self._armed[point] -= 1
            return True
        return False


faults = FaultInjector()
