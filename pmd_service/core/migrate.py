"""Apply `migrations/NNNN_name.sql` in order, each once, in its own transaction.

The files' one source is the checkout's top-level `migrations/`; the build maps that folder to
the subpackage `pmd_service.migrations` (pyproject.toml), so a wheel or the image carries them
and they are read with importlib.resources wherever the package is installed.

Everything they create lives in the service's own schema (`PMD_SCHEMA`, default `pmd`), its
ledger included: beside the host site the service never creates, alters, indexes or locks a
host table. Only when the host schema has neither `users` nor `posts` (standalone: dev, demo,
tests) does `migrations/standalone/host_tables.sql` create the host tables the service needs.

An advisory lock serialises concurrent migrators (several replicas starting together); a file
whose checksum changed after it was applied is refused loudly rather than silently skipped.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

from .rules import AdvisoryLock
from .settings import Settings

if TYPE_CHECKING:
    from .db import Conn


log = logging.getLogger(__name__)

MIGRATIONS: Traversable = files("pmd_service.migrations")
STANDALONE_HOST_TABLES = "standalone/host_tables.sql"
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Run with the search path set to the service's schema (see `_use`): names stay unqualified.
SQL_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   char(64) NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SQL_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
SQL_RECORD = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
SQL_SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)"
SQL_STANDALONE = """
SELECT to_regclass(format('%I.users', $1::text)) IS NULL
   AND to_regclass(format('%I.posts', $1::text)) IS NULL
"""
# Transaction-local: a pooled or reused connection keeps its own search path afterwards.
SQL_USE = "SELECT set_config('search_path', $1, true)"


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Traversable = MIGRATIONS) -> list[Migration]:
    found: list[Migration] = []
    sql_files = (f for f in directory.iterdir() if f.is_file() and f.name.endswith(".sql"))
    for path in sorted(sql_files, key=lambda f: f.name):
        match = _NAME_RE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {directory}")
    return found


def _quoted(schema: str) -> str:
    if not _SCHEMA_RE.fullmatch(schema):
        raise MigrationError(f"{schema!r} is not a plain lower-case schema name")
    return f'"{schema}"'


async def apply_migrations(
    conn: Conn,
    directory: Traversable = MIGRATIONS,
    *,
    schema: str = "pmd",
    host_schema: str = "public",
) -> list[str]:
    """Apply pending migrations; returns the names applied by this call."""
    own, host = _quoted(schema), _quoted(host_schema)
    migrations = discover(directory)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", AdvisoryLock.MIGRATIONS)
    try:
        if not await conn.fetchval(SQL_SCHEMA_EXISTS, schema):
            # Needs the CREATE privilege on the database once; later starts need none.
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {own}")
        if await conn.fetchval(SQL_STANDALONE, host_schema):
            async with conn.transaction():
                await conn.execute(SQL_USE, host)
                await conn.execute(
                    directory.joinpath(*STANDALONE_HOST_TABLES.split("/")).read_text("utf-8")
                )
            applied_now.append("standalone host tables")
            log.info("no host tables in schema %s: created the standalone ones", host_schema)
        search_path = f"{own}, {host}"
        async with conn.transaction():
            await conn.execute(SQL_USE, search_path)
            await conn.execute(SQL_CREATE_LEDGER)
            done = {r["version"]: r for r in await conn.fetch(SQL_APPLIED)}
        for migration in migrations:
            row = done.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name}.sql was changed "
                        "after it was applied; add a new migration instead of editing it"
                    )
                continue
            async with conn.transaction():
                await conn.execute(SQL_USE, search_path)
                await conn.execute(migration.sql)
                await conn.execute(
                    SQL_RECORD, migration.version, migration.name, migration.checksum
                )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
            log.info("applied migration %04d_%s", migration.version, migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", AdvisoryLock.MIGRATIONS)
    return applied_now


async def migrate(conn: Conn, settings: Settings) -> list[str]:
    """The migrations into the configured schemas."""
    return await apply_migrations(
        conn, schema=settings.pmd_schema, host_schema=settings.host_schema
    )
