"""Apply `migrations/NNNN_name.sql` in order, each once, in its own transaction.

An advisory lock serialises concurrent migrators (several replicas starting together); a file
whose checksum changed after it was applied is refused loudly rather than silently skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .settings import PROJECT_ROOT

if TYPE_CHECKING:
    from .db import Conn


log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(os.environ.get("PMD_MIGRATIONS_DIR") or PROJECT_ROOT / "migrations")
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant unique to this service; pg_advisory_lock takes a bigint.
_LOCK_KEY = 0x504D445F4D4947  # "PMD_MIG"

SQL_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS pmd_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   char(64) NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SQL_APPLIED = "SELECT version, name, checksum FROM pmd_schema_migrations ORDER BY version"
SQL_RECORD = "INSERT INTO pmd_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"


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


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME_RE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {directory}")
    return found


async def apply_migrations(conn: Conn, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied by this call."""
    migrations = discover(directory)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
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
                await conn.execute(migration.sql)
                await conn.execute(
                    SQL_RECORD, migration.version, migration.name, migration.checksum
                )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
            log.info("applied migration %04d_%s", migration.version, migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
