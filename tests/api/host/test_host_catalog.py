"""Beside the host, the service's migrations add no foreign key, index or trigger that touches a
host table: read from the catalog (pg_constraint, pg_index, pg_trigger) of a database shaped as
the host's migrations make it (`tests/host_schema.sql`), before and after `migrate` as the
service's `grants` role. (This replaced the timing of migrations beside a million posts: with
nothing on a host table, their time cannot grow with the host.)"""

from __future__ import annotations

from pmd_service.core.db import connect
from pmd_service.core.migrate import migrate
from pmd_service.core.settings import Settings
from support.stack import connected
from tests.helpers import direct

# Every foreign key from or to a table of schema $1, every index and every trigger on one.
SQL_TOUCHING_HOST = """
WITH host AS (
    SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
)
SELECT format('foreign key %s of %s to %s', conname, conrelid::regclass, confrelid::regclass)
FROM pg_constraint
WHERE contype = 'f' AND (conrelid IN (SELECT oid FROM host) OR confrelid IN (SELECT oid FROM host))
UNION ALL
SELECT format('index %s on %s', indexrelid::regclass, indrelid::regclass)
FROM pg_index WHERE indrelid IN (SELECT oid FROM host)
UNION ALL
SELECT format('trigger %s on %s calling %s', tgname, tgrelid::regclass, tgfoid::regproc)
FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM host)
"""


async def touching_host(url: str, schema: str) -> set[str]:
    async with connected(url) as conn:
        return {row[0] for row in await conn.fetch(SQL_TOUCHING_HOST, schema)}


async def test_migrations_add_no_foreign_key_index_or_trigger_on_a_host_table(
    host_url: str, host_role_url: str, settings: Settings
) -> None:
    service = direct(settings, host_role_url)
    before = await touching_host(host_url, service.host_schema)
    assert any(s.startswith("index ") for s in before)  # the host's own are found
    migrator = await connect(host_role_url, "pmd-test-migrate", search_path=service.search_path)
    try:
        assert await migrate(migrator, service)  # the migrations were applied here
    finally:
        await migrator.close()
    assert await touching_host(host_url, service.host_schema) == before
