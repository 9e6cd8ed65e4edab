"""A reference consumer of entitlement events that detects gaps (pure; what downstream should do).

It applies an event whose ``previous_version`` is the version it holds, ignores anything at or
below that version (duplicates, late arrivals), and on a gap asks for a snapshot instead of
applying an event it cannot place. A snapshot carries the current version and replaces the state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VersionedSet:
    """One published set: its version, the version it follows, and its body."""

    version: int
    previous_version: int
    body: dict[str, Any]


@dataclass
class GapDetectingConsumer:
    """Holds one key's set; ``request_snapshot`` is called on a gap and returns the current set."""

    request_snapshot: Callable[[], VersionedSet]
    version: int = 0
    body: dict[str, Any] = field(default_factory=dict)
    snapshots_requested: int = 0

    def receive(self, event: VersionedSet) -> None:
        """Apply, ignore or resynchronise."""
        if event.version <= self.version:
            return  # a duplicate or an event older than what is held
        if event.previous_version != self.version:
            self.snapshots_requested += 1
            self.apply_snapshot(self.request_snapshot())
            return
        self.version, self.body = event.version, event.body

    def apply_snapshot(self, snap: VersionedSet) -> None:
        """Take a snapshot unless it is older than what is held."""
        if snap.version >= self.version:
            self.version, self.body = snap.version, snap.body
