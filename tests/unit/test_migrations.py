from __future__ import annotations

import asyncio
import logging
import shutil
from importlib.resources import as_file
from pathlib import Path

import asyncpg
import pytest

from pmd_service.core import migrate as migrate_module
from pmd_service.core.migrate import (
    HOST_TABLES,
    MIGRATIONS,
    STANDIN_COMMENT,
    HostTablesMissing,
    MigrationError,
    apply_migrations,
    database_label,
    discover,
    discover_repeatable,
    migrate,
)
from pmd_service.core.settings import Settings
from support.stack import connected


def _every_definition() -> list[str]:
    """What a first migrate applies, in order: the migrations, then the repeatable definitions
    (in the last migration's transaction)."""
    return [
        *(f"{m.version:04d}_{m.name}" for m in discover()),
        *(f"repeatable {r.name}" for r in discover_repeatable()),
    ]


async def test_apply_on_empty_then_noop(empty_db: str) -> None:
    async with connected(empty_db) as conn:
        applied = await apply_migrations(conn, with_host_tables=True)
        assert applied == ["standalone host tables", *_every_definition()]
        assert await apply_migrations(conn) == []
        assert await apply_migrations(conn, with_host_tables=True) == []
        tables = {
            (r["schemaname"], r["tablename"])
            for r in await conn.fetch("SELECT schemaname, tablename FROM pg_tables")
        }
        # Standalone: the host's tables in its schema, everything of the service's in its own.
        host = {"users", "posts", "post_files", "comments", "reactions", "licenses", "audit_logs"}
        own = {
            "batch_download_requests",
            "stream_events",
            "moderator_deletions",
            "audited_reads",
            "schema_migrations",
            "schema_repeatables",
        }
        assert {("public", t) for t in host} | {("pmd", t) for t in own} <= tables
        assert not {t for s, t in tables if s == "public"} & own
        rows = await conn.fetch(
            "SELECT version, checksum FROM pmd.schema_migrations ORDER BY version"
        )
        assert [r["version"] for r in rows] == [m.version for m in discover()]


async def test_concurrent_migrators_apply_each_file_once(empty_db: str) -> None:
    conns = [await asyncpg.connect(empty_db) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(c, with_host_tables=True) for c in conns))
        every = [name for result in results for name in result]
        assert sorted(every) == sorted(["standalone host tables", *_every_definition()])
        assert await conns[0].fetchval("SELECT count(*) FROM pmd.schema_migrations") == len(
            discover()
        )
    finally:
        for c in conns:
            await c.close()


def _with(tmp_path: Path, **added: str) -> Path:
    """The shipped migrations copied under `tmp_path`, with `added` (name → SQL) beside them."""
    copy = tmp_path / "migrations"
    if not copy.exists():
        with as_file(MIGRATIONS) as shipped:
            shutil.copytree(shipped, copy)
    for name, sql in added.items():
        (copy / f"{name}.sql").write_text(sql)
    return copy


async def test_changed_applied_file_is_refused(empty_db: str, tmp_path: Path) -> None:
    copy = _with(tmp_path)
    async with connected(empty_db) as conn:
        await apply_migrations(conn, copy, with_host_tables=True)
        first = sorted(copy.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited after the fact\n")
        with pytest.raises(MigrationError, match="was changed after it was applied"):
            await apply_migrations(conn, copy)


async def test_a_failing_migration_leaves_nothing_behind(empty_db: str, tmp_path: Path) -> None:
    copy = _with(tmp_path, **{"9999_broken": "CREATE TABLE half_done (id int);\nSELECT 1/0;\n"})
    async with connected(empty_db) as conn:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await apply_migrations(conn, copy, with_host_tables=True)
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT to_regclass('pmd.half_done')") is None
        assert await conn.fetchval("SELECT max(version) FROM pmd.schema_migrations") < 9999


# As the events' rename went (0025): a table altered, then the view over it replaced, while the
# previous release writes through the view (locking it, then the table).
TABLE_THEN_VIEW = """
ALTER TABLE step_events ADD COLUMN y int;
SELECT pg_sleep(0.5);
CREATE OR REPLACE VIEW step_events_view AS SELECT id, x, y FROM step_events;
"""


async def _holding(conn: asyncpg.Connection, pid: int, relation: str) -> None:
    """Once session `pid` holds an exclusive lock on `relation` (within 10 s)."""
    sql = """SELECT 1 FROM pg_locks WHERE pid = $1 AND relation = $2::regclass AND granted
             AND mode = 'AccessExclusiveLock'"""
    for _ in range(1000):
        if await conn.fetchval(sql, pid, relation) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"session {pid} never locked {relation}")


async def test_a_migration_steps_aside_for_a_write_through_the_view_it_replaces(
    empty_db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = "CREATE TABLE step_events (id serial PRIMARY KEY, x int);"
    view = "CREATE VIEW step_events_view AS SELECT id, x FROM step_events;"
    copy = _with(tmp_path, **{"9998_step_events": table + view})
    async with connected(empty_db) as migrator, connected(empty_db) as writer:
        await apply_migrations(migrator, copy, with_host_tables=True)
        _with(tmp_path, **{"9999_table_then_view": TABLE_THEN_VIEW})
        caplog.set_level(logging.WARNING, logger=migrate_module.__name__)
        migrating = asyncio.create_task(apply_migrations(migrator, copy))
        await _holding(writer, migrator.get_server_pid(), "pmd.step_events")
        # Holds the view and waits for the table: the migration must not wait for it in turn.
        await writer.execute("INSERT INTO pmd.step_events_view (x) VALUES (1)")
        assert await migrating == ["9999_table_then_view"]
        columns = await writer.fetch("SELECT * FROM pmd.step_events_view")
        assert [dict(r) for r in columns] == [{"id": 1, "x": 1, "y": None}]
    assert any("9999" in r.getMessage() for r in caplog.records)


async def test_a_migration_that_never_gets_its_lock_says_so(
    empty_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = _with(tmp_path, **{"9998_step_events": "CREATE TABLE step_events (x int);"})
    async with connected(empty_db) as migrator, connected(empty_db) as holder:
        await apply_migrations(migrator, copy, with_host_tables=True)
        _with(tmp_path, **{"9999_add": "ALTER TABLE step_events ADD COLUMN y int;"})
        monkeypatch.setattr(migrate_module, "RETRY_FOR_SECONDS", 1.0)
        async with holder.transaction():
            await holder.execute("LOCK TABLE pmd.step_events IN ACCESS SHARE MODE")
            with pytest.raises(MigrationError, match="9999: still waiting for locks after 1 s"):
                await apply_migrations(migrator, copy)
        assert await apply_migrations(migrator, copy) == ["9999_add"]


async def test_schema_constraints(pool: asyncpg.Pool) -> None:
    user_id = await pool.fetchval(
        "INSERT INTO users (handle, email) VALUES ('a', 'a@x') RETURNING id"
    )
    # Defaults let a row be inserted naming only what matters.
    post = await pool.fetchrow(
        "INSERT INTO posts (owner_id, title) VALUES ($1, 't') RETURNING *", user_id
    )
    assert post is not None
    assert post["kind"] == "artwork" and post["hashtags"] == [] and not post["hidden_by_user"]
    insert = "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count, status) VALUES ($1, $2, $3, $4)"
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(insert, user_id, [1, 2], 3, "pending")  # count must equal cardinality
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(insert, user_id, list(range(1, 130)), 129, "pending")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(insert, user_id, [1], 1, "done")
    await pool.execute(insert, user_id, [1], 1, "pending")
    # The insert became an event and rang the doorbell.
    assert await pool.fetchval("SELECT count(*) FROM stream_events") == 1


async def _tables(conn: asyncpg.Connection) -> set[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT schemaname, tablename FROM pg_tables"
        " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    )
    return {(r["schemaname"], r["tablename"]) for r in rows}


async def test_no_host_table_is_created_without_the_explicit_flag(empty_db: str) -> None:
    """A wrong DATABASE_URL: migrate stops, naming the database and a missing table, and the
    database is left as it was (no stand-in host, no schema of the service's)."""
    settings = Settings(database_url=empty_db, redis_url="redis://unused", jwt_secret_key="x" * 40)
    async with connected(empty_db) as conn:
        with pytest.raises(HostTablesMissing) as raised:
            await migrate(conn, settings)
        message = str(raised.value)
        assert f"database {database_label(empty_db)} has no host table" in message
        assert "has no host table public.audit_logs" in message and "\n" not in message
        assert "postgres@" not in message and "password" not in message
        with pytest.raises(MigrationError, match="no host table"):
            await apply_migrations(conn)
        assert await _tables(conn) == set()
        assert await conn.fetchval("SELECT to_regnamespace('pmd')") is None
        # The explicit development form creates the stand-ins, each marked as such.
        applied = await migrate(conn, settings, with_host_tables=True)
        assert applied[0] == "standalone host tables"
        marks = await conn.fetch(
            "SELECT c.relname, obj_description(c.oid, 'pg_class') AS mark FROM pg_class c"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
        )
        assert {r["relname"] for r in marks} == set(HOST_TABLES)
        assert {r["mark"] for r in marks} == {STANDIN_COMMENT}


async def test_stand_ins_go_only_into_a_schema_with_no_host_table(empty_db: str) -> None:
    async with connected(empty_db) as conn:
        await conn.execute("CREATE TABLE users (id int)")
        with pytest.raises(MigrationError, match="holds some host tables"):
            await apply_migrations(conn, with_host_tables=True)
        assert await _tables(conn) == {("public", "users")}


def test_database_label_names_no_credentials() -> None:
    assert database_label("postgresql://u:secret@db.example:6543/site") == "db.example:6543/site"
    assert database_label("postgresql://u@10.0.0.5/site") == "10.0.0.5:5432/site"
    assert (
        database_label("postgresql://postgres:@/postgres?host=/tmp/pg") == "/tmp/pg:5432/postgres"
    )


async def test_the_embedded_development_database_gets_the_stand_ins(empty_db: str) -> None:
    """What `services` does for an embedded PostgreSQL (development only), idempotently."""
    from pmd_service.dev.embedded import with_host_tables

    with_host_tables(empty_db, "public")
    with_host_tables(empty_db, "public")
    async with connected(empty_db) as conn:
        assert await _tables(conn) == {("public", t) for t in HOST_TABLES}
