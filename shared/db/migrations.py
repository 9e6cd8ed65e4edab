"""Forward-only SQL migrations: ``shared/db/migrations`` first, then each service's ``migrations/``.

Applied under an advisory lock, each file in its own transaction, recorded in
``public.som_schema_migrations`` so that running them again is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg

_ROOT = Path(__file__).resolve().parents[2]
_LOCK_ID = 7_311_977_001
COMPONENTS: tuple[tuple[str, Path], ...] = (
    ("shared", _ROOT / "shared" / "db" / "migrations"),
    ("intake", _ROOT / "services" / "intake" / "migrations"),
    ("lifecycle", _ROOT / "services" / "lifecycle" / "migrations"),
    ("billing", _ROOT / "services" / "billing" / "migrations"),
    ("entitlements", _ROOT / "services" / "entitlements" / "migrations"),
)


@dataclass(frozen=True)
class Migration:
    """One SQL file of one component."""

    component: str
    version: str
    path: Path


def discover() -> list[Migration]:
    """All migration files in the order they must run."""
    found: list[Migration] = []
    for component, folder in COMPONENTS:
        if folder.is_dir():
            for f in sorted(folder.glob("*.sql")):
                found.append(Migration(component, f.stem, f))
    return found


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
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
        for m in discover():
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


async def migrate_dsn(dsn: str) -> list[Migration]:
    """Connect, migrate, disconnect."""
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
