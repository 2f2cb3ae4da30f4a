"""`grants`: the service's least-privilege role. Every statement of the service runs under it,
each right it gives is needed by some statement, and the host's tables cannot be altered,
dropped or emptied by it; check-host says what a role holds beyond that."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pmd_service.core.db import connect
from pmd_service.host.cutover import _IMPORTED, _SQL_HOST_ROWS
from pmd_service.host.grants import INSERTS, READS, UPDATES, GrantsError, grants_sql
from pmd_service.host.hostcheck import NEEDED_COLUMNS, check_host
from tests.helpers import CHECKOUT
from tests.test_hostcheck import _service_statements

ROLE_SEARCH_PATH = '"pmd", "public"'


def _statements() -> dict[str, str]:
    found = _service_statements()
    # Statements outside SQL_* constants: the cut-over's query and the token command's.
    found["cutover rows"] = _SQL_HOST_ROWS.format(
        schema="public", imported=_IMPORTED.format(own="pmd")
    )
    found["token"] = "SELECT roles FROM users WHERE public_sqid = $1"
    return found


async def _refused(conn: asyncpg.Connection, statements: dict[str, str]) -> dict[str, str]:
    """The statements this connection's role may not run. EXPLAIN checks every privilege a
    statement needs (PostgreSQL checks them as it starts executing) and runs nothing."""
    refused: dict[str, str] = {}
    for name, sql in statements.items():
        try:
            async with conn.transaction():
                explain = await conn.prepare("EXPLAIN " + sql)
                await explain.fetch(*[None] * len(explain.get_parameters()))
        except asyncpg.InsufficientPrivilegeError as exc:
            refused[name] = str(exc)
    return refused


def test_the_rights_are_the_columns_the_sql_names() -> None:
    """READS, UPDATES and INSERTS together are hostcheck's column list (which
    test_hostcheck proves is exactly what the SQL names), and nothing is read that is only
    written."""
    granted = {
        (table, column)
        for rights in (READS, UPDATES, INSERTS)
        for table, columns in rights.items()
        for column in columns
    }
    assert granted == {(need.table, need.column) for need in NEEDED_COLUMNS}
    assert ("posts", "updated_at") not in {(t, c) for t, cs in READS.items() for c in cs}
    assert "audit_logs" not in READS


@pytest.fixture
async def as_role(host_role_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(host_role_url, "pmd-test", search_path=ROLE_SEARCH_PATH)
    yield conn
    await conn.close()


async def test_every_statement_runs_under_the_role_and_every_right_is_needed(
    host_url: str, host_role_url: str
) -> None:
    admin = await asyncpg.connect(host_url)
    role_conn = await connect(host_role_url, "pmd-test", search_path=ROLE_SEARCH_PATH)
    try:
        # The service's own tables, created by the role (the schema is the role's).
        from pmd_service.core.migrate import apply_migrations

        await apply_migrations(role_conn)
        role = await role_conn.fetchval("SELECT current_user")
        statements = _statements()
        assert len(statements) > 40
        await admin.execute(grants_sql(role, cutover=True))
        assert await _refused(role_conn, statements) == {}
        unneeded = []
        rights = [("SELECT", READS), ("UPDATE", UPDATES), ("INSERT", INSERTS)]
        for privilege, tables in rights:
            for table, columns in tables.items():
                for column in columns:
                    await admin.execute(f"REVOKE {privilege} ({column}) ON {table} FROM {role}")
                    if not await _refused(role_conn, statements):
                        unneeded.append(f"{privilege} {table}.{column}")
                    await admin.execute(f"GRANT {privilege} ({column}) ON {table} TO {role}")
        assert unneeded == []
        # Without the cut-over's right, only the cut-over's query is refused.
        await admin.execute(f"REVOKE SELECT ON batch_download_requests FROM {role}")
        assert list(await _refused(role_conn, statements)) == ["cutover rows"]
    finally:
        await role_conn.close()
        await admin.close()


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE posts",
        "ALTER TABLE posts ADD COLUMN pmd_extra int",
        "CREATE INDEX pmd_extra ON posts (title)",
        "DELETE FROM posts",
        "TRUNCATE posts",
        "UPDATE posts SET title = 'x'",
        "UPDATE posts SET owner_id = owner_id",
        "UPDATE users SET roles = '[\"owner\"]'",
        "INSERT INTO users (handle, email) VALUES ('x', 'x@x')",
        "DELETE FROM audit_logs",
        "SELECT updated_at FROM posts",
        "CREATE TABLE public.pmd_extra (id int)",
        "COMMENT ON TABLE posts IS 'x'",
    ],
)
async def test_the_suites_role_cannot_alter_drop_or_empty_host_tables(
    database_url: str, statement: str
) -> None:
    """On the suite's own database, as the role every test hands the service."""
    conn = await connect(database_url, "pmd-test", search_path=ROLE_SEARCH_PATH)
    try:
        assert (
            await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            is False
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_check_host_reports_what_a_role_holds_beyond_need(
    host_url: str, as_role: asyncpg.Connection
) -> None:
    role = await as_role.fetchval("SELECT current_user")
    admin = await connect(host_url, "pmd-test", search_path=ROLE_SEARCH_PATH)
    try:
        report = await check_host(as_role, "public", privileges=True)
        assert report.privileges is not None
        assert report.privileges.lines() == [
            f"  ok       role {role} holds exactly what the service needs"
        ]
        await admin.execute(f"GRANT DELETE, TRUNCATE ON posts TO {role}")
        await admin.execute(f"GRANT UPDATE (title) ON posts TO {role}")
        await admin.execute(f"GRANT SELECT ON users TO {role}")
        await admin.execute(f"REVOKE UPDATE (license_id) ON posts FROM {role}")
        report = await check_host(as_role, "public", privileges=True)
        assert report.privileges is not None
        assert report.privileges.lines() == [
            "  MISSING  posts.license_id: no UPDATE privilege",
            "  beyond need  posts: DELETE; TRUNCATE; UPDATE on title",
            "  beyond need  users: SELECT on bio, tagline, website, avatar_url, email_normalized, "
            "email_verified (+12 more)",
        ]
        assert not report.fits  # a missing right fails; one beyond need is a warning
        await admin.execute(f"GRANT UPDATE (license_id) ON posts TO {role}")
        assert (await check_host(as_role, "public", privileges=True)).privileges.missing == []  # type: ignore[union-attr]
        # An owner of a host table, and a superuser: warned, not detailed.
        await admin.execute(f"ALTER TABLE reactions OWNER TO {role}")
        lines = (await check_host(as_role, "public", privileges=True)).privileges.lines()  # type: ignore[union-attr]
        assert (
            f"  WARNING  role {role} owns host tables reactions: an owner may alter or drop"
            in lines[0]
        )
        assert not any(line.startswith("  beyond need  reactions") for line in lines)
        # The cut-over's right is said to be the cut-over's.
        await admin.execute(grants_sql(role, cutover=True))
        report = await check_host(as_role, "public", privileges=True)
        assert report.privileges is not None
        [line] = [ln for ln in report.privileges.lines() if "batch_download_requests" in ln]
        assert line.startswith("  beyond need  batch_download_requests: SELECT on id, user_id")
        assert line.endswith("for import-host-bdrs: revoke after the cut-over)")
        superuser = await check_host(admin, "public", privileges=True)
        assert superuser.privileges is not None
        assert (
            "is a superuser: it may alter, drop or empty any host table"
            in superuser.privileges.lines()[0]
        )
    finally:
        await admin.close()


def test_the_cli_prints_the_script() -> None:
    def grants(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pmd_service", "grants", *args],
            capture_output=True, text=True, timeout=60, cwd=CHECKOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    done = grants("--role", "pmd_app")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == grants_sql("pmd_app")
    assert "CREATE SCHEMA IF NOT EXISTS pmd AUTHORIZATION pmd_app;" in done.stdout
    assert (
        "GRANT INSERT (id, actor_id, action, target_type, target_id, note) ON public.audit_logs TO pmd_app;"
        in done.stdout
    )
    assert "batch_download_requests" not in done.stdout
    assert "batch_download_requests" in grants("--role", "pmd_app", "--cutover").stdout
    bad = grants("--role", "x; DROP TABLE posts")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "plain lower-case name" in bad.stderr
    with pytest.raises(GrantsError):
        grants_sql("Robert'); --")
