"""In-memory fakes of a handler's unit of work and stores: handlers run in milliseconds, no broker or
database. Only what the handlers call is faked; the real stores are covered by the integration tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.entitlements.store import EntitlementRecord
from shared.contracts.envelope import CloudEvent


@dataclass
class FakeUnitOfWork:
    """Collects emitted events in memory, as the outbox would at commit."""

    service: str = "test"
    namespace: str = ""
    conn: Any = None  # the fake stores ignore the connection
    emitted: list[tuple[str, CloudEvent]] = field(default_factory=list)

    def emit(self, topic: str, event: CloudEvent, *, key: str | None = None) -> None:
        """Queue ``event`` for ``topic``."""
        self.emitted.append((topic, event))


@dataclass
class FakeEntitlementStore:
    """Entitlement sets in a dict, keyed by subscription id."""

    sets: dict[str, EntitlementRecord] = field(default_factory=dict)

    async def load(self, conn: Any, subscription_id: str) -> EntitlementRecord | None:
        """The subscription's set, or None."""
        return self.sets.get(subscription_id)

    async def touch(self, conn: Any, subscription_id: str, lifecycle_version: int) -> None:
        """Only the applied lifecycle version changes."""
        current = self.sets[subscription_id]
        self.sets[subscription_id] = EntitlementRecord(current.version, lifecycle_version, current.body)

    async def save(
        self, conn: Any, subscription_id: str, version: int, lifecycle_version: int, body: dict[str, Any]
    ) -> None:
        """Insert or replace the set."""
        self.sets[subscription_id] = EntitlementRecord(version, lifecycle_version, body)
