"""Apply the numbered, forward-only migrations in ``db/migrations``.

Each file runs in its own transaction and is recorded in
``schema_migrations``; all of it happens under a session advisory lock, so
two ``vapi-ingest migrate`` processes (two release steps) apply each file
once. Running it again is a no-op.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from db.errors import MigrationError
from db.pool import connect
from db.types import Conn

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
FILE_PATTERN = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
#: Arbitrary constant naming the migration lock (pg_advisory_lock key).
MIGRATION_LOCK_KEY = 7_242_001


@dataclass(frozen=True)
class Migration:
    """One migration file: ``version`` is its 4-digit prefix."""

    version: str
    path: Path


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """List migrations in order.

    Raises:
        MigrationError: if a file is misnamed or the numbering has a gap.
    """
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} must be named NNNN_lower_snake.sql")
        found.append(Migration(match.group(1), path))
    for index, migration in enumerate(found, start=1):
        if int(migration.version) != index:
            raise MigrationError(f"migration {migration.path.name} breaks the numbering (expected {index:04d})")
    return found


async def ensure_database(dsn: str) -> bool:
    """Create the database named in ``dsn`` if it does not exist.

    Returns:
        True if it was created.
    """
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    if not name:
        return False
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await admin.execute(f"CREATE DATABASE {quoted}")
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    return True


async def applied_versions(conn: Conn) -> set[str]:
    """Versions recorded in ``schema_migrations`` (empty if the table is missing)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    return {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}


async def migrate(dsn: str, *, target: str | None = None) -> list[str]:
    """Apply every unapplied migration (up to and including version ``target``, e.g. ``"0004"``, if given).

    Returns:
        The file names applied by this call (empty when already up to date).

    Raises:
        MigrationError: naming the file that failed, with PostgreSQL's error.
    """
    await ensure_database(dsn)
    migrations = discover()
    conn = await connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = await applied_versions(conn)
        for migration in migrations:
            if migration.version in done or (target is not None and migration.version > target):
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.path.read_text())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.path.name,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{migration.path.name} failed: {exc}") from exc
            applied_now.append(migration.path.name)
    finally:
        await conn.close()
    return applied_now


async def pending(conn: Conn) -> list[str]:
    """File names of migrations not yet applied on ``conn``'s database (for /readyz)."""
    done = await applied_versions(conn)
    return [m.path.name for m in discover() if m.version not in done]
