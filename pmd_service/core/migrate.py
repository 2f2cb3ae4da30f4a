"""Apply `migrations/NNNN_name.sql` in order, each once, in its own transaction and the service's
schema, then the repeatable definitions whose checksum changed; an applied file changed is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import time
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import asyncpg

from .locks import AdvisoryLock
from .settings import ConfigError, Settings

if TYPE_CHECKING:
    from .db import Conn


log = logging.getLogger(__name__)


MIGRATIONS: Traversable = files("pmd_service.migrations")
STANDALONE: Traversable = MIGRATIONS.joinpath("standalone", "host_tables.sql")
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Run with the search path set to the service's schema (see `_use`): names stay unqualified.
SQL_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   char(64) NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS schema_repeatables (
    name       text PRIMARY KEY,
    checksum   char(64) NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SQL_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
SQL_REPEATABLES_APPLIED = "SELECT name, checksum FROM schema_repeatables"
SQL_RECORD_REPEATABLE = """
INSERT INTO schema_repeatables (name, checksum) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()
"""
SQL_RECORD = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
SQL_SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)"
# The host tables the service uses (a test holds them to those host/hostcheck.py's needs name).
HOST_TABLES = ("audit_logs", "comments", "licenses", "post_files", "posts", "reactions", "users")
# What host_tables.sql puts on each table it creates, so check-host knows a stand-in.
STANDIN_COMMENT = "pmd-service standalone stand-in"
SQL_MISSING_HOST_TABLES = """
SELECT coalesce(array_agg(t ORDER BY t), '{}')
FROM unnest($2::text[]) AS t
WHERE to_regclass(format('%I.%I', $1::text, t)) IS NULL
"""
# Transaction-local: a pooled or reused connection keeps its own search path afterwards.
SQL_USE = "SELECT set_config('search_path', $1, true)"
# A migration beside running servers waits this briefly for each lock, then steps aside and
# tries again: waiting longer would queue every request behind it, and a request that holds one
# of its tables while waiting for another would lose the deadlock check to it (PostgreSQL checks
# the longer waiter first, after `deadlock_timeout`, 1 s by default).
SQL_LOCK_WAIT = "SET LOCAL lock_timeout = '100ms'"
STEP_ASIDE = (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError)
RETRY_FIRST_SECONDS, RETRY_MOST_SECONDS, RETRY_FOR_SECONDS = 0.1, 5.0, 600.0


class MigrationError(RuntimeError):
    pass


class HostTablesMissing(ConfigError):
    """The database has not the host's tables: most likely DATABASE_URL names another one."""


def database_label(url: str | None) -> str:
    """`host:port/dbname` of a PostgreSQL URL, without user or password (for messages)."""
    parts = urlsplit(url or "")
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or ["localhost"])[0]
    port = parts.port or int((query.get("port") or ["5432"])[0])
    dbname = parts.path.lstrip("/") or (query.get("dbname") or [""])[0] or "postgres"
    return f"{host}:{port}/{dbname}"


async def missing_host_tables(conn: Conn, host_schema: str) -> list[str]:
    missing: list[str] = await conn.fetchval(SQL_MISSING_HOST_TABLES, host_schema, HOST_TABLES)
    return missing


async def require_host_tables(conn: Conn, settings: Settings) -> None:
    """Stop (HostTablesMissing) unless the host's tables are there."""
    if missing := await missing_host_tables(conn, settings.host_schema):
        others = f" (nor {', '.join(missing[1:])})" if missing[1:] else ""
        raise HostTablesMissing(
            f"database {database_label(settings.database_url)} has no host table "
            f"{settings.host_schema}.{missing[0]}{others}: is DATABASE_URL the host's database? "
            "(a development database gets stand-ins from "
            "`python -m pmd_service migrate --with-host-tables`)"
        )


async def create_host_tables(conn: Conn, host_schema: str = "public") -> bool:
    """Development and tests only: creates the stand-in host tables; returns whether it did."""
    host = _quoted(host_schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", AdvisoryLock.MIGRATIONS)
        missing = await missing_host_tables(conn, host_schema)
        if not missing:
            return False
        if len(missing) < len(HOST_TABLES):
            raise MigrationError(
                f"schema {host_schema} holds some host tables but not {', '.join(missing)}: "
                "stand-ins are created only into a schema with none of them"
            )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {host}")
        await conn.execute(SQL_USE, host)
        await conn.execute(STANDALONE.read_text("utf-8"))
    log.info("created the stand-in host tables in schema %s (development only)", host_schema)
    return True


@dataclass(frozen=True)
class Repeatable:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Migration(Repeatable):
    version: int


def discover_repeatable(directory: Traversable = MIGRATIONS) -> list[Repeatable]:
    """`repeatable/NAME.sql` under `directory`, by name (none when it has no such folder)."""
    folder = directory.joinpath("repeatable")
    if not folder.is_dir():
        return []
    sql_files = (f for f in folder.iterdir() if f.is_file() and f.name.endswith(".sql"))
    return [
        Repeatable(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8"))
        for f in sorted(sql_files, key=lambda f: f.name)
    ]


def discover(directory: Traversable = MIGRATIONS) -> list[Migration]:
    found: list[Migration] = []
    sql_files = (f for f in directory.iterdir() if f.is_file() and f.name.endswith(".sql"))
    for path in sorted(sql_files, key=lambda f: f.name):
        match = _NAME_RE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_name.sql")
        found.append(Migration(match[2], path.read_text(encoding="utf-8"), int(match[1])))
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
    with_host_tables: bool = False,
) -> list[str]:
    """Apply pending migrations; returns the names applied by this call.

    `with_host_tables` (development and tests only) first creates the stand-in host tables."""
    own, host = _quoted(schema), _quoted(host_schema)
    migrations = discover(directory)
    applied_now: list[str] = []
    if with_host_tables and await create_host_tables(conn, host_schema):
        applied_now.append("standalone host tables")
    if missing := await missing_host_tables(conn, host_schema):
        raise MigrationError(
            f"schema {host_schema} has no host table {', '.join(missing)}: the service never "
            "creates one beside the host (development: `migrate --with-host-tables`)"
        )
    await conn.execute("SELECT pg_advisory_lock($1)", AdvisoryLock.MIGRATIONS)
    try:
        if not await conn.fetchval(SQL_SCHEMA_EXISTS, schema):
            # Needs CREATE on the database; beside the host the admin creates it (`grants`).
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {own}")
        search_path = f"{own}, {host}"
        async with conn.transaction():
            await conn.execute(SQL_USE, search_path)
            await conn.execute(SQL_CREATE_LEDGER)
            done = {r["version"]: r["checksum"] for r in await conn.fetch(SQL_APPLIED)}
            recorded = {r["name"]: r["checksum"] for r in await conn.fetch(SQL_REPEATABLES_APPLIED)}
        for migration in migrations:
            if done.get(migration.version, migration.checksum) != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name}.sql was changed "
                    "after it was applied; add a new migration instead of editing it"
                )
        pending = [m for m in migrations if m.version not in done]
        changed = [r for r in discover_repeatable(directory) if recorded.get(r.name) != r.checksum]
        for migration in pending:
            with_them = changed if migration is pending[-1] else []
            applied_now += await _apply(conn, search_path, migration, with_them)
            log.info("applied migration %04d_%s", migration.version, migration.name)
        if changed and not pending:
            applied_now += await _apply(conn, search_path, None, changed)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", AdvisoryLock.MIGRATIONS)
    return applied_now


async def _apply(
    conn: Conn, search_path: str, migration: Migration | None, changed: list[Repeatable]
) -> list[str]:
    """`migration` and then `changed` in a transaction of their own, begun again whenever it
    gave up a lock (or was a deadlock's victim), until RETRY_FOR_SECONDS have passed."""
    what = f"{migration.version:04d}" if migration is not None else "repeatable definitions"
    pause, until = RETRY_FIRST_SECONDS, time.monotonic() + RETRY_FOR_SECONDS
    while True:
        try:
            async with conn.transaction():
                await conn.execute(SQL_LOCK_WAIT)
                await conn.execute(SQL_USE, search_path)
                applied: list[str] = []
                if migration is not None:
                    await conn.execute(migration.sql)
                    await conn.execute(
                        SQL_RECORD, migration.version, migration.name, migration.checksum
                    )
                    applied.append(f"{migration.version:04d}_{migration.name}")
                for repeatable in changed:
                    await conn.execute(repeatable.sql)
                    await conn.execute(SQL_RECORD_REPEATABLE, repeatable.name, repeatable.checksum)
                    log.info("applied repeatable definition %s", repeatable.name)
                return applied + [f"repeatable {r.name}" for r in changed]
        except STEP_ASIDE as exc:
            reason = str(exc).splitlines()[0]
            if time.monotonic() + pause > until:
                raise MigrationError(
                    f"{what}: still waiting for locks after {RETRY_FOR_SECONDS:.0f} s ({reason}); "
                    "a long transaction holds a table it changes: end it, then migrate again"
                ) from exc
            log.warning(
                "%s: %s; the servers' requests go first, again within %.1f s", what, reason, pause
            )
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, RETRY_MOST_SECONDS)


async def migrate(conn: Conn, settings: Settings, *, with_host_tables: bool = False) -> list[str]:
    """The migrations into the configured schemas (see apply_migrations)."""
    if not with_host_tables:
        await require_host_tables(conn, settings)
    return await apply_migrations(
        conn,
        schema=settings.pmd_schema,
        host_schema=settings.host_schema,
        with_host_tables=with_host_tables,
    )
