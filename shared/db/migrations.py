"""Forward-only SQL migrations: ``shared/db/migrations`` first, then each service's ``migrations/``
(the folders its spec names; ``services/registry.py`` registers them).

Applied under an advisory lock, each file in its own transaction, recorded in
``public.som_schema_migrations`` so that running them again is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

_LOCK_ID = 7_311_977_001
SHARED_COMPONENT: tuple[str, Path] = ("shared", Path(__file__).resolve().parent / "migrations")
# (component, folder) in the order they run: the shared schema first, then every registered service.
COMPONENTS: list[tuple[str, Path]] = [SHARED_COMPONENT]


def register(component: str, folder: Path) -> None:
    """Add a component's migrations folder (once; later registrations of the same name are ignored)."""
    if all(name != component for name, _ in COMPONENTS):
        COMPONENTS.append((component, folder))


@dataclass(frozen=True)
class Migration:
    """One SQL file of one component."""

    component: str
    version: str
    path: Path


def discover(components: Sequence[tuple[str, Path]] | None = None) -> list[Migration]:
    """All migration files in the order they must run (of ``components``, default :data:`COMPONENTS`)."""
    if components is None and len(COMPONENTS) == 1:
        # Only the shared schema known: a silent partial migration would pass for a full one.
        raise RuntimeError("no service migrations registered: pass them, or import services.registry first")
    found: list[Migration] = []
    for component, folder in COMPONENTS if components is None else components:
        if folder.is_dir():
            for f in sorted(folder.glob("*.sql")):
                found.append(Migration(component, f.stem, f))
    return found


async def migrate(
    conn: asyncpg.Connection, components: Sequence[tuple[str, Path]] | None = None
) -> list[Migration]:
    """Apply every migration not applied yet; returns what was applied now."""
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS public.som_schema_migrations (
               component text NOT NULL, version text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"""
    )
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        done = {
            (r["component"], r["version"])
            for r in await conn.fetch("SELECT component, version FROM public.som_schema_migrations")
        }
        for m in discover(components):
            if (m.component, m.version) in done:
                continue
            async with conn.transaction():
                await conn.execute(m.path.read_text())
                await conn.execute(
                    "INSERT INTO public.som_schema_migrations (component, version) VALUES ($1, $2)",
                    m.component,
                    m.version,
                )
            applied_now.append(m)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied_now


async def migrate_dsn(dsn: str, components: Sequence[tuple[str, Path]] | None = None) -> list[Migration]:
    """Connect, migrate, disconnect."""
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, components)
    finally:
        await conn.close()
