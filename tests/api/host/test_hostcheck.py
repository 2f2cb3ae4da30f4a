"""`check-host` against the host's schema as its migrations make them (tests/host_schema.sql),
against copies of its tables without indexes, and against standalone; all on real PostgreSQL."""

from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path

import asyncpg
import pytest
from pytest_aiohttp import AiohttpClient

from pmd_service.core.db import connect
from pmd_service.core.migrate import HOST_TABLES
from pmd_service.core.settings import Settings
from pmd_service.host.hostcheck import (
    INSERTED,
    NEEDED_COLUMNS,
    NEEDED_INDEXES,
    HostReport,
    check_host,
    missing_indexes,
    quote_ident,
    warn_if_host_lacks,
)
from pmd_service.web.app import create_app
from support.stack import connected
from tests.helpers import SECRET, direct, naming_first, run_python, service_statements

# A name that needs quoting: the printed statements must quote the schema they name.
COPY = "host copy"


@pytest.fixture
async def bare(host: asyncpg.Connection) -> asyncpg.Connection:
    """Schema `host copy`: the host's tables, columns only (LIKE copies no index)."""
    await host.execute(f"CREATE SCHEMA {quote_ident(COPY)}")
    for table in HOST_TABLES:
        await host.execute(
            f"CREATE TABLE {quote_ident(COPY)}.{table} (LIKE public.{table} INCLUDING DEFAULTS)"
        )
    return host


def _covered(report: HostReport) -> dict[str, str | None]:
    return {found.need.label: found.covered_by for found in report.indexes}


async def _run_printed(conn: asyncpg.Connection, text: str) -> list[str]:
    """Run the statements the report printed, one by one, as psql would."""
    statements = [line for line in text.splitlines() if re.match(r"(CREATE|DROP) INDEX", line)]
    for statement in statements:
        await conn.execute(statement)  # outside a transaction, as CONCURRENTLY requires
    return statements


async def test_the_hosts_own_indexes_count_by_definition(host: asyncpg.Connection) -> None:
    report = await check_host(host, "public")
    assert _covered(report) == {
        # The host's (owner_id, created_at) serves the page but not its total: counting with it
        # reads every post of the owner.
        "posts (owner_id, created_at) WHERE kind = 'artwork' AND NOT deleted_by_user": None,
        "posts (owner_id, deleted_by_user_date) WHERE deleted_by_user": None,
        "post_files (post_id)": "ix_post_files_post_id",
        "comments (post_id)": "ix_comments_post_id",
        "reactions (post_id)": "ix_reactions_post_id",
        "users (public_sqid)": "ix_users_public_sqid",
        "users (user_key)": "ix_users_user_key",
    }
    assert report.column_problems == []
    assert [need.name for need in missing_indexes(report)] == [
        "pmd_posts_owner_live",
        "pmd_posts_owner_deleted",
    ]
    assert not report.fits
    text = report.render()
    assert "  MISSING  posts (owner_id, deleted_by_user_date) WHERE deleted_by_user" in text
    assert "  ok       users (user_key): served by ix_users_user_key" in text
    statements = [
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS pmd_posts_owner_live ON "public".posts '
        "(owner_id, created_at DESC, id DESC) WHERE kind = 'artwork' AND NOT deleted_by_user;",
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS pmd_posts_owner_deleted ON "public".posts '
        "(owner_id, deleted_by_user_date DESC, id DESC) WHERE deleted_by_user;",
    ]
    assert await _run_printed(host, text) == statements
    report = await check_host(host, "public")
    assert report.fits, report.render()
    assert missing_indexes(report) == []
    assert "MISSING" not in report.render() and "CREATE INDEX" not in report.render()
    assert _covered(report)["posts (owner_id, deleted_by_user_date) WHERE deleted_by_user"] == (
        "pmd_posts_owner_deleted"
    )


async def test_each_printed_statement_serves_its_need(bare: asyncpg.Connection) -> None:
    report = await check_host(bare, COPY)
    assert report.column_problems == []
    assert missing_indexes(report) == list(NEEDED_INDEXES)
    printed = await _run_printed(bare, report.render())
    assert len(printed) == len(NEEDED_INDEXES)
    assert all(f'ON "{COPY}".' in statement for statement in printed)
    # Each recommended index, partial ones included, serves the need it was printed for.
    report = await check_host(bare, COPY)
    assert _covered(report) == {need.label: need.name for need in NEEDED_INDEXES}
    assert report.fits, report.render()


@pytest.mark.parametrize(
    ("columns", "where", "served"),
    [
        # As PostgreSQL prints them: `deleted_by_user`, `(deleted_by_user = true)`, …
        ("owner_id, deleted_by_user_date", "deleted_by_user", True),
        ("owner_id, deleted_by_user_date", "deleted_by_user = true", True),
        ("owner_id, deleted_by_user_date", "NOT deleted_by_user", False),
        ("owner_id, deleted_by_user_date", "deleted_by_user AND kind = 'artwork'", False),
        ("owner_id, deleted_by_user_date DESC, id DESC", None, True),
        ("owner_id, created_at", "kind = 'artwork' AND NOT deleted_by_user", True),
        ("owner_id, created_at", "kind = 'artwork' AND deleted_by_user = false", True),
        ("owner_id, created_at", "kind = 'playlist'", False),
        ("owner_id, created_at", "NOT deleted_by_user", False),
        ("owner_id, created_at DESC", None, False),  # its total would read every post
    ],
)
async def test_partial_indexes_serve_only_with_the_needs_predicate(
    bare: asyncpg.Connection, columns: str, where: str | None, served: bool
) -> None:
    sql = f"CREATE INDEX candidate ON {quote_ident(COPY)}.posts ({columns})"
    await bare.execute(sql + (f" WHERE {where}" if where else ""))
    covering = {f.covered_by for f in (await check_host(bare, COPY)).indexes}
    assert ("candidate" in covering) is served


async def test_the_live_predicate_when_kind_is_text(bare: asyncpg.Connection) -> None:
    await bare.execute(f"ALTER TABLE {quote_ident(COPY)}.posts ALTER COLUMN kind TYPE text")
    await bare.execute(
        f"CREATE INDEX candidate ON {quote_ident(COPY)}.posts (owner_id, created_at) "
        "WHERE kind = 'artwork' AND NOT deleted_by_user"
    )
    report = await check_host(bare, COPY)
    assert (
        _covered(report)[
            "posts (owner_id, created_at) WHERE kind = 'artwork' AND NOT deleted_by_user"
        ]
        == "candidate"
    )


async def test_names_do_not_count_definitions_do(host: asyncpg.Connection) -> None:
    await host.execute(
        """
        DROP INDEX ix_posts_owner_created;
        ALTER INDEX ix_reactions_post_id RENAME TO whatever_it_is_called;
        -- Neither an expression, nor an INCLUDE column, nor another collation makes a key column.
        CREATE INDEX by_utc ON posts (owner_id, (created_at AT TIME ZONE 'UTC'));
        CREATE INDEX with_include ON posts (owner_id) INCLUDE (created_at);
        ALTER TABLE users DROP CONSTRAINT users_public_sqid_key;
        DROP INDEX ix_users_public_sqid;
        CREATE INDEX sqid_c ON users (public_sqid COLLATE "C");
        -- Only btree: a hash index on comments (post_id) serves no ORDER BY, no range, no count plan.
        DROP INDEX ix_comments_post_id;
        DROP INDEX ix_comments_post_created;
        CREATE INDEX comments_hash ON comments USING hash (post_id);
        """
    )
    covered = _covered(await check_host(host, "public"))
    assert (
        covered["posts (owner_id, created_at) WHERE kind = 'artwork' AND NOT deleted_by_user"]
        is None
    )  # (owner_id) alone does not serve
    assert covered["reactions (post_id)"] == "whatever_it_is_called"
    assert covered["users (public_sqid)"] is None
    assert covered["comments (post_id)"] is None
    await host.execute(
        "CREATE INDEX later ON posts (owner_id, created_at DESC, id DESC) "
        "WHERE kind = 'artwork' AND NOT deleted_by_user"
    )
    await host.execute("CREATE INDEX sqid ON users (public_sqid)")
    covered = _covered(await check_host(host, "public"))
    assert (
        covered["posts (owner_id, created_at) WHERE kind = 'artwork' AND NOT deleted_by_user"]
        == "later"
    )
    assert covered["users (public_sqid)"] == "sqid"


async def test_an_invalid_index_serves_nothing_and_is_dropped_first(
    host: asyncpg.Connection,
) -> None:
    await host.execute(  # the other index the host lacks: only the invalid one is left
        "CREATE INDEX pmd_posts_owner_live ON posts (owner_id, created_at DESC, id DESC) "
        "WHERE kind = 'artwork' AND NOT deleted_by_user"
    )
    owner = await host.fetchval(
        "INSERT INTO users (user_key, handle, email, handle_normalized) "
        "VALUES (gen_random_uuid(), 'ann', 'ann@example.org', 'ann') RETURNING id"
    )
    await host.execute(
        "INSERT INTO posts (storage_key, owner_id, title, deleted_by_user, deleted_by_user_date) "
        "SELECT gen_random_uuid(), $1, 'Twin', true, '2026-01-01T00:00:00Z' "
        "FROM generate_series(1, 2)",
        owner,
    )
    # A CREATE INDEX CONCURRENTLY that fails leaves its index behind, INVALID, under the very
    # name the report recommends: `IF NOT EXISTS` alone would never replace it.
    with pytest.raises(asyncpg.UniqueViolationError):
        await host.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY pmd_posts_owner_deleted "
            "ON posts (owner_id, deleted_by_user_date) WHERE deleted_by_user"
        )
    assert await host.fetchval(
        "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = 'pmd_posts_owner_deleted'::regclass"
    )
    report = await check_host(host, "public")
    [found] = [f for f in report.indexes if f.covered_by is None]
    assert found.in_the_way == "pmd_posts_owner_deleted"
    text = report.render()
    assert "pmd_posts_owner_deleted exists but does not serve it" in text
    assert await _run_printed(host, text) == [
        'DROP INDEX CONCURRENTLY IF EXISTS "public".pmd_posts_owner_deleted;',
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS pmd_posts_owner_deleted ON "public".posts '
        "(owner_id, deleted_by_user_date DESC, id DESC) WHERE deleted_by_user;",
    ]
    assert (await check_host(host, "public")).fits


async def test_columns_that_do_not_fit_are_one_line_each(host: asyncpg.Connection) -> None:
    await host.execute(
        """
        ALTER TABLE posts DROP COLUMN updated_at;
        ALTER TABLE users ALTER COLUMN roles TYPE text USING roles::text;
        ALTER TABLE posts ALTER COLUMN created_at TYPE timestamp;
        ALTER TABLE posts ALTER COLUMN title DROP NOT NULL;
        ALTER TABLE posts ALTER COLUMN license_id SET NOT NULL;
        ALTER TABLE licenses ALTER COLUMN identifier TYPE char(50);
        ALTER TABLE audit_logs ADD COLUMN severity int NOT NULL;
        ALTER TABLE audit_logs ADD COLUMN tag text NOT NULL DEFAULT '';
        """
    )
    report = await check_host(host, "public")
    assert report.column_problems == [
        "users.roles: type text, expected json or jsonb",
        "posts.title: nullable, expected NOT NULL (the service reads a value in every row: "
        "listed, checked and changed by the dashboard)",
        "posts.created_at: type timestamp without time zone, expected timestamp with time zone",
        "posts.license_id: NOT NULL, expected nullable (the service writes NULL into it: the "
        "license action sets or clears it)",
        "posts.updated_at: missing (the service sets it on every change)",
        "licenses.identifier: type character(50), expected varchar or text",
        "audit_logs.severity: NOT NULL without a default, and the service's inserts do not name it",
    ]
    text = report.render()
    assert all(f"\n  {problem}" in text for problem in report.column_problems)
    assert not report.fits


async def test_a_missing_table_is_one_line(host: asyncpg.Connection) -> None:
    await host.execute("ALTER TABLE reactions RENAME TO reactions_old")
    report = await check_host(host, "public")
    assert report.column_problems == ["reactions: no such table in schema public"]
    assert [need.label for need in missing_indexes(report)] == [
        "posts (owner_id, created_at) WHERE kind = 'artwork' AND NOT deleted_by_user",
        "posts (owner_id, deleted_by_user_date) WHERE deleted_by_user",
        "reactions (post_id)",
    ]


async def _unpreparable(conn: asyncpg.Connection, statements: dict[str, str]) -> dict[str, str]:
    failed: dict[str, str] = {}
    for name, sql in statements.items():
        try:
            async with conn.transaction():  # a savepoint: one failure spoils nothing else
                await conn.prepare(sql)
        except asyncpg.PostgresError as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    return failed


async def _needs(conn: asyncpg.Connection, statements: dict[str, str], column: str) -> bool:
    """Whether some statement no longer prepares for want of a column (`naming_first`'s order)."""
    for sql in naming_first(statements, column):
        try:
            async with conn.transaction():
                await conn.prepare(sql)
        except asyncpg.UndefinedColumnError:
            return True
        except asyncpg.PostgresError:
            continue
    return False


async def test_the_column_list_is_what_the_sql_names(host: asyncpg.Connection) -> None:
    statements = service_statements()
    assert any(
        name.startswith("pmd_service.features.posts.listing.SQL_PAGES") for name in statements
    )
    assert len(statements) > 40
    assert await _unpreparable(host, statements) == {}
    needed = {(c.table, c.column) for c in NEEDED_COLUMNS}
    # With only the listed columns left, every statement still prepares: none is left out.
    others = await host.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = ANY($1::text[])",
        HOST_TABLES,
    )
    tr = host.transaction()
    await tr.start()
    for row in others:
        if (row["table_name"], row["column_name"]) not in needed:
            await host.execute(
                f"ALTER TABLE public.{row['table_name']} DROP COLUMN "
                f"{quote_ident(row['column_name'])} CASCADE"
            )
    assert await _unpreparable(host, statements) == {}
    await tr.rollback()
    # Without any one of them some statement fails: none is listed that the SQL never names.
    unused = []
    for table, column in sorted(needed):
        tr = host.transaction()
        await tr.start()
        await host.execute(f"ALTER TABLE public.{table} DROP COLUMN {column} CASCADE")
        needed_here = await _needs(host, statements, column)
        await tr.rollback()
        if not needed_here:
            unused.append(f"{table}.{column}")
    assert unused == []
    # The columns the service's inserts into host tables name, as INSERTED says.
    inserted: dict[str, set[str]] = {}
    for sql in statements.values():
        for table, columns in re.findall(r"INSERT INTO (\w+)\s*\(([^)]*)\)", sql):
            if table in HOST_TABLES:
                inserted.setdefault(table, set()).update(c.strip() for c in columns.split(","))
    assert inserted == {table: set(columns) for table, columns in INSERTED.items()}


async def test_standalone_fits_only_as_a_dev_database(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        report = await check_host(conn, "public", dev_database=True)
        assert report.fits, report.render()
        assert "CREATE INDEX" not in report.render()
        # The stand-ins `migrate --with-host-tables` made are never taken for the host's.
        report = await check_host(conn, "public")
    assert not report.fits
    assert report.standins == sorted(HOST_TABLES)
    first, *_ = report.render().splitlines()
    assert first.startswith("NOT THE HOST'S: audit_logs, comments, licenses, post_files, posts")
    assert "`migrate --with-host-tables`" in first


def test_the_host_tables_are_those_the_needs_name() -> None:
    named = {n.table for n in NEEDED_INDEXES} | {c.table for c in NEEDED_COLUMNS}
    assert list(HOST_TABLES) == sorted(named)


def _cli(url: str, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "JWT_SECRET_KEY": SECRET,
        "AUTO_MIGRATE": "false",
    }
    return run_python("-m", "pmd_service", "check-host", *args, env=env)


async def test_cli_exit_status_and_statements(
    host: asyncpg.Connection, host_role_url: str, redis_url: str
) -> None:
    # As the service's role (`grants` also made the admin-migrated schema the role's).
    done = _cli(host_role_url, redis_url)
    assert done.returncode == 1, done
    assert "  MISSING  posts (owner_id, deleted_by_user_date) WHERE deleted_by_user" in done.stdout
    role = await connect(host_role_url, "pmd-test", search_path='"pmd", "public"')
    try:
        report = await check_host(role, "public", privileges=True)
    finally:
        await role.close()
    assert done.stdout.strip() == report.render()
    assert report.privileges is not None
    assert report.privileges.lines() == [
        f"  ok       role {report.privileges.role} holds exactly what the service needs"
    ]
    assert await _run_printed(host, done.stdout) == report.statements()
    done = _cli(host_role_url, redis_url)
    assert done.returncode == 0, done
    assert "MISSING" not in done.stdout and "CREATE INDEX" not in done.stdout


async def test_dev_database_privileges_rehearse_the_role_check(
    database_url: str, admin_database_url: str, redis_url: str
) -> None:
    """On the suite's own database (stand-in host tables): --dev-database alone is one line for
    any role; with --privileges the role is reported and judged as on the host's database."""
    service = _cli(database_url, redis_url, "--dev-database", "--privileges")
    assert service.returncode == 0, service
    assert "holds exactly what the service needs" in service.stdout
    assert "NOT THE HOST'S" not in service.stdout
    admin = _cli(admin_database_url, redis_url, "--dev-database", "--privileges")
    assert admin.returncode == 1, admin
    async with connected(admin_database_url) as conn:
        name = await conn.fetchval("SELECT current_user")
    assert f"  UNSAFE   role {name} is a superuser" in admin.stdout
    assert "make the service a role of its own" in admin.stdout
    assert f"grants --role {name}` refuses it" in admin.stdout
    assert f"run the output of `python -m pmd_service grants --role {name}`" not in admin.stdout
    quiet = _cli(admin_database_url, redis_url, "--dev-database")
    assert quiet.returncode == 0, quiet
    assert quiet.stdout.startswith("development database:") and "UNSAFE" not in quiet.stdout


def test_cli_help_says_what_the_exit_status_means() -> None:
    done = run_python("-m", "pmd_service", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "check-host report the host-table indexes and columns the service relies on" in text
    assert "exit 0 when everything fits, 1 when something is missing" in text


def _hostcheck_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "pmd_service.host.hostcheck"
        or (r.levelno >= logging.WARNING and "check-host" in r.getMessage())
    ]


async def test_the_server_warns_once_at_start(
    host: asyncpg.Connection,
    host_url: str,
    settings: Settings,
    aiohttp_client: AiohttpClient,
    redis_clean: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await host.execute("ALTER TABLE users ALTER COLUMN roles TYPE text USING roles::text")
    caplog.set_level(logging.WARNING)
    client = await aiohttp_client(create_app(direct(settings, host_url)))
    assert (await client.get("/healthz")).status == 200
    [warning] = _hostcheck_warnings(caplog)
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert "\n" not in message
    assert (
        "missing indexes: posts (owner_id, created_at) WHERE kind = 'artwork' AND NOT "
        "deleted_by_user" in message
    )
    assert "posts (owner_id, deleted_by_user_date) WHERE deleted_by_user" in message
    assert "users.roles: type text, expected json or jsonb" in message
    assert "python -m pmd_service check-host" in message


async def test_the_server_is_silent_when_everything_fits(
    pool: asyncpg.Pool,
    settings: Settings,
    aiohttp_client: AiohttpClient,
    redis_clean: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/healthz")).status == 200
    assert _hostcheck_warnings(caplog) == []


async def test_a_failed_check_is_a_warning_never_a_failure(
    host: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pmd_service.host.hostcheck")
    tr = host.transaction()
    await tr.start()
    with pytest.raises(asyncpg.DivisionByZeroError):
        await host.execute("SELECT 1 / 0")
    await warn_if_host_lacks(host, "public")  # the aborted transaction refuses every query
    await tr.rollback()
    [warning] = _hostcheck_warnings(caplog)
    assert "could not check the host's tables in schema public" in warning.getMessage()


def test_quote_ident() -> None:
    assert quote_ident("public") == '"public"'
    assert quote_ident('a"b') == '"a""b"'


def test_the_host_schema_file_is_there() -> None:
    # The fixture every test above loads; its absence must fail loudly, not skip.
    assert Path(__file__).parents[2].joinpath("host_schema.sql").stat().st_size > 0
