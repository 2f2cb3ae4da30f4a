"""`grants`: the service's least-privilege role. Every statement of the service runs under it,
each right it gives is needed by some statement, and the host's tables cannot be altered,
dropped or emptied by it; check-host says what a role holds beyond that."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from pmd_service.core.db import IDLE_IN_TRANSACTION_SECONDS, connect
from pmd_service.core.migrate import apply_migrations
from pmd_service.features.bdr.cutover import _IMPORTED, _SQL_HOST_ROWS
from pmd_service.host.grants import INSERTS, NEWER_READS, READS, UPDATES, GrantsError, grants_sql
from pmd_service.host.hostcheck import FIX, NEEDED_COLUMNS, OWN_ROLE, HostReport, check_host
from tests.helpers import (
    SECRET,
    admin_and_role,
    any_refused,
    grant_role,
    refused,
    run_python,
    service_statements,
)
from tests.helpers import as_role as url_as_role

ROLE_SEARCH_PATH = '"pmd", "public"'


def _statements() -> dict[str, str]:
    found = service_statements()
    # Statements outside SQL_* constants: the cut-over's query and the token command's.
    found["cutover rows"] = _SQL_HOST_ROWS.format(
        schema="public", imported=_IMPORTED.format(own="pmd")
    )
    found["token"] = "SELECT roles FROM users WHERE public_sqid = $1"
    return found


def test_the_rights_are_the_columns_the_sql_names() -> None:
    """READS, UPDATES and INSERTS together are hostcheck's column list (which
    test_hostcheck proves is exactly what the SQL names), and nothing is read that is only
    written."""
    granted = {
        (table, column)
        for rights in (READS, NEWER_READS, UPDATES, INSERTS)
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
    async with admin_and_role(host_url, host_role_url) as (admin, role_conn, role):
        statements = _statements()
        assert len(statements) > 40
        await admin.execute(grants_sql(role, cutover=True))
        assert await refused(role_conn, statements) == {}
        unneeded = []
        rights = [("SELECT", READS), ("UPDATE", UPDATES), ("INSERT", INSERTS)]
        for privilege, tables in rights:
            for table, columns in tables.items():
                for column in columns:
                    await admin.execute(f"REVOKE {privilege} ({column}) ON {table} FROM {role}")
                    if not await any_refused(role_conn, statements, column):
                        unneeded.append(f"{privilege} {table}.{column}")
                    await admin.execute(f"GRANT {privilege} ({column}) ON {table} TO {role}")
        assert unneeded == []
        # Without the cut-over's right, only the cut-over's query is refused.
        await admin.execute(f"REVOKE SELECT ON batch_download_requests FROM {role}")
        assert list(await refused(role_conn, statements)) == ["cutover rows"]


async def test_grants_run_again_waits_for_no_transaction_of_the_service(
    host_url: str, host_role_url: str
) -> None:
    """An upgrade runs the new release's script while the previous release serves: with the
    service's tables already the role's, it takes no lock a reader of them holds off (an
    ALTER … OWNER of each deadlocked with the serving release's queries)."""
    async with admin_and_role(host_url, host_role_url) as (admin, role_conn, role):
        await admin.execute(grants_sql(role))
        async with role_conn.transaction():
            await role_conn.fetch("SELECT * FROM batch_download_requests, stream_events LIMIT 1")
            await admin.execute("SET lock_timeout = '2s'")
            await admin.execute(grants_sql(role))
        # An object another role created there is still made the role's.
        await admin.execute("CREATE TABLE pmd.pmd_extra (id int)")
        await admin.execute(grants_sql(role))
        owner = "SELECT tableowner FROM pg_tables WHERE schemaname = 'pmd' AND tablename = $1"
        assert await admin.fetchval(owner, "pmd_extra") == role


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
            "  UNSAFE   posts: DELETE; TRUNCATE; UPDATE on title (the service needs none of these)",
            f"  to fix:  {FIX.format(role=role)}",
            "  MISSING  posts.license_id: no UPDATE privilege",
            "  beyond need  users: SELECT on tagline, website, email_normalized, "
            "email_verified, welcome_completed, reputation (+12 more)",
        ]
        assert not _privileges_fit(report)
        await admin.execute(f"GRANT UPDATE (license_id) ON posts TO {role}")
        await admin.execute(f"REVOKE DELETE, TRUNCATE, UPDATE (title) ON posts FROM {role}")
        report = await check_host(as_role, "public", privileges=True)
        assert report.privileges is not None and report.privileges.missing == []
        assert _privileges_fit(report)  # a read beyond need is a warning
        # An owner of a host table: unsafe, not detailed.
        await admin.execute(f"ALTER TABLE reactions OWNER TO {role}")
        report = await check_host(as_role, "public", privileges=True)
        assert report.privileges is not None
        lines = report.privileges.lines()
        assert lines[0].startswith(
            f"  UNSAFE   role {role} owns host tables reactions; sequences reactions_id_seq: an "
            "owner may alter or drop"
        )
        assert not any(" reactions:" in line for line in lines)
        assert not _privileges_fit(report)
        await admin.execute(
            f"ALTER TABLE reactions OWNER TO {await admin.fetchval('SELECT current_user')}"
        )
        # The cut-over's right is said to be the cut-over's.
        await admin.execute(grants_sql(role, cutover=True))
        report = await check_host(as_role, "public", privileges=True)
        assert report.privileges is not None
        [line] = [ln for ln in report.privileges.lines() if "batch_download_requests" in ln]
        assert line.startswith("  beyond need  batch_download_requests: SELECT on id, user_id")
        assert line.endswith("for import-host-bdrs: revoke after the cut-over)")
        # Run again without --cutover, the script takes that right back.
        await admin.execute(grants_sql(role))
        report = await check_host(as_role, "public", privileges=True)
        assert report.privileges is not None
        assert report.privileges.lines() == [
            f"  ok       role {role} holds exactly what the service needs"
        ]
        superuser = await check_host(admin, "public", privileges=True)
        assert superuser.privileges is not None
        assert superuser.privileges.unsafe == [
            f"role {superuser.privileges.role} is a superuser: it may alter, drop or empty any "
            "host table"
        ]
        assert not _privileges_fit(superuser)
        # A dev database's admin: reported, and accepted with --dev-database.
        dev = HostReport(superuser.schema, privileges=superuser.privileges, dev_database=True)
        assert dev.fits, dev.render()
    finally:
        await admin.close()


def _privileges_fit(report: HostReport) -> bool:
    """Whether check-host passes on privileges alone (indexes and columns aside)."""
    return HostReport(report.schema, privileges=report.privileges).fits


@dataclass
class FreshRole:
    """A role made by `grants` on the host database, for one test: what it is given there
    (attributes, memberships) would otherwise outlive the test, roles being the cluster's."""

    name: str
    url: str
    admin: asyncpg.Connection
    others: list[str]

    async def check(self) -> HostReport:
        conn = await connect(self.url, "pmd-test", search_path=ROLE_SEARCH_PATH)
        try:
            return await check_host(conn, "public", privileges=True)
        finally:
            await conn.close()


@pytest.fixture
async def fresh_role(host_url: str) -> AsyncIterator[FreshRole]:
    suffix = uuid.uuid4().hex[:8]
    name = f"pmd_chk_{suffix}"
    admin = await asyncpg.connect(host_url)
    await grant_role(admin, name, "fresh-role-pw")
    url = url_as_role(host_url, name, "fresh-role-pw")
    role = FreshRole(name, url, admin, [f"pmd_grp_{suffix}"])
    try:
        yield role
    finally:
        me = await admin.fetchval("SELECT current_user")
        for other in [name, *role.others]:
            if await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", other):
                await admin.execute(f"REASSIGN OWNED BY {other} TO {me}; DROP OWNED BY {other}")
                await admin.execute(f"DROP ROLE {other}")
        await admin.close()


# Each way a role could take over the host's database that check-host once passed as "holds
# exactly what the service needs" (exit 0): {role} is the service's role, {other} a role of the
# test's. Then the line that reports it.
TAKEOVERS = {
    "a member of the host tables' owner role (NOINHERIT: SET ROLE all the same)": (
        "CREATE ROLE {other} NOLOGIN; ALTER TABLE audit_logs OWNER TO {other}; "
        "GRANT {other} TO {role}",
        "role {role} may act as role {other} (a member: SET ROLE needs no INHERIT), which owns "
        "host tables audit_logs: an owner may alter or drop them",
    ),
    "CREATEROLE": (
        "ALTER ROLE {role} CREATEROLE",
        "role {role} has CREATEROLE: it may create roles",
    ),
    "pg_write_all_data": (
        "GRANT pg_write_all_data TO {role}",
        "role {role} may act as role pg_write_all_data (a member: SET ROLE needs no INHERIT): "
        "it may write, delete and empty every table",
    ),
    "pg_execute_server_program": (
        "GRANT pg_execute_server_program TO {role}",
        "role {role} may act as role pg_execute_server_program (a member: SET ROLE needs no "
        "INHERIT): it may run programs on the database server",
    ),
    "CREATE on the host schema": (
        "GRANT CREATE ON SCHEMA public TO {role}",
        "schema public: CREATE: a table or function the role creates there may take the place",
    ),
    "UPDATE on a host sequence": (
        "GRANT UPDATE ON SEQUENCE users_id_seq TO {role}",
        "sequence users_id_seq: UPDATE: setval() may make the host's inserts collide",
    ),
    "BYPASSRLS": ("ALTER ROLE {role} BYPASSRLS", "role {role} has BYPASSRLS: it is exempt"),
    "CREATEDB": ("ALTER ROLE {role} CREATEDB", "role {role} has CREATEDB: it may create"),
    "REPLICATION": (
        "ALTER ROLE {role} REPLICATION",
        "role {role} has REPLICATION: it may stream every row of the database out",
    ),
    "a member of a role holding an attribute and a write right": (
        "CREATE ROLE {other} NOLOGIN CREATEDB; GRANT DELETE ON posts TO {other}; "
        "GRANT {other} TO {role}",
        "role {role} may act as role {other} (a member: SET ROLE needs no INHERIT), which has "
        "CREATEDB",
    ),
}


@pytest.mark.parametrize("case", list(TAKEOVERS))
async def test_check_host_fails_a_role_that_could_take_over_and_grants_resets_it(
    fresh_role: FreshRole, case: str
) -> None:
    role, other = fresh_role.name, fresh_role.others[0]
    before = await fresh_role.check()
    assert before.privileges is not None
    assert before.privileges.lines() == [
        f"  ok       role {role} holds exactly what the service needs"
    ]
    setup, reported = TAKEOVERS[case]
    await fresh_role.admin.execute(setup.format(role=role, other=other))
    report = await fresh_role.check()
    assert report.privileges is not None
    lines = report.privileges.lines()
    assert not any("holds exactly what the service needs" in line for line in lines), lines
    expected = "  UNSAFE   " + reported.format(role=role, other=other)
    assert any(line.startswith(expected) for line in lines), lines
    assert not _privileges_fit(report)  # check-host exits 1
    assert f"  to fix:  {FIX.format(role=role)}" in report.render()
    # The script run again takes it all back: the role holds what the service needs, again.
    await fresh_role.admin.execute(grants_sql(role))
    after = await fresh_role.check()
    assert after.privileges is not None
    assert after.privileges.lines() == [
        f"  ok       role {role} holds exactly what the service needs"
    ]


async def test_a_noinherit_member_of_the_owner_role_can_drop_host_tables(
    fresh_role: FreshRole,
) -> None:
    """Why a membership counts even without INHERIT: the role may SET ROLE to the owner."""
    role, owner = fresh_role.name, fresh_role.others[0]
    setup, _ = TAKEOVERS[
        "a member of the host tables' owner role (NOINHERIT: SET ROLE all the same)"
    ]
    await fresh_role.admin.execute(setup.format(role=role, other=owner))
    assert not await fresh_role.admin.fetchval(
        "SELECT rolinherit FROM pg_roles WHERE rolname = $1", role
    )
    conn = await connect(fresh_role.url, "pmd-test", search_path=ROLE_SEARCH_PATH)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DROP TABLE audit_logs")  # not as itself
        tx = conn.transaction()
        await tx.start()
        await conn.execute(f"SET ROLE {owner}")
        await conn.execute("DROP TABLE audit_logs")  # as the owner
        await tx.rollback()
    finally:
        await conn.close()


async def test_the_cli_exits_1_for_a_role_that_could_take_over(
    fresh_role: FreshRole, redis_url: str
) -> None:
    """The command itself, on a host whose indexes are all there (exit 0 before)."""
    role, owner = fresh_role.name, fresh_role.others[0]
    migrated = await connect(fresh_role.url, "pmd-test", search_path=ROLE_SEARCH_PATH)
    try:
        await apply_migrations(migrated)
    finally:
        await migrated.close()
    report = await fresh_role.check()
    for statement in report.statements():
        await fresh_role.admin.execute(statement)
    env = os.environ | {
        "DATABASE_URL": fresh_role.url,
        "REDIS_URL": redis_url,
        "JWT_SECRET_KEY": SECRET,
        "AUTO_MIGRATE": "false",
    }

    def check_host_cli() -> subprocess.CompletedProcess[str]:
        return run_python("-m", "pmd_service", "check-host", env=env)

    done = await asyncio.to_thread(check_host_cli)
    assert done.returncode == 0, done
    assert "holds exactly what the service needs" in done.stdout
    setup, _ = TAKEOVERS[
        "a member of the host tables' owner role (NOINHERIT: SET ROLE all the same)"
    ]
    await fresh_role.admin.execute(setup.format(role=role, other=owner))
    await fresh_role.admin.execute(f"ALTER ROLE {role} CREATEROLE")
    done = await asyncio.to_thread(check_host_cli)
    assert done.returncode == 1, done
    assert "holds exactly what the service needs" not in done.stdout
    unsafe = [line for line in done.stdout.splitlines() if line.startswith("  UNSAFE")]
    assert len(unsafe) == 2, done.stdout
    assert any("which owns host tables audit_logs" in line for line in unsafe)
    assert any(f"role {role} has CREATEROLE" in line for line in unsafe)


def _refused_for(role: str, why: str) -> str:
    return f"  to fix:  {OWN_ROLE.format(role=role, why=why)}"


async def _host_rights(admin: asyncpg.Connection, role: str) -> dict[str, bool]:
    return {
        right: await admin.fetchval("SELECT has_table_privilege($1, 'posts', $2)", role, right)
        for right in ("SELECT", "INSERT", "UPDATE", "DELETE")
    }


async def test_grants_refuses_the_hosts_own_role_and_check_host_never_advises_it(
    fresh_role: FreshRole,
) -> None:
    """The host app's role owns its tables. check-host used to say "run the output of `grants
    --role <it>`", and that script revoked its own INSERT, UPDATE and DELETE on them."""
    host_app = f"pmd_hostapp_{uuid.uuid4().hex[:8]}"
    fresh_role.others.append(host_app)
    admin = fresh_role.admin
    await admin.execute(f"CREATE ROLE {host_app} LOGIN PASSWORD 'host-app-pw'")
    for table in ("posts", "users", "audit_logs"):
        await admin.execute(f"ALTER TABLE {table} OWNER TO {host_app}")
    assert await _host_rights(admin, host_app) == dict.fromkeys(
        ("SELECT", "INSERT", "UPDATE", "DELETE"), True
    )
    host_app_url = url_as_role(fresh_role.url, host_app, "host-app-pw")
    conn = await connect(host_app_url, "pmd-test", search_path=ROLE_SEARCH_PATH)
    try:
        report = await check_host(conn, "public", privileges=True)
    finally:
        await conn.close()
    assert report.privileges is not None and not _privileges_fit(report)
    why = "owns host objects (the host's own role)"
    assert _refused_for(host_app, why) in report.render()
    assert f"grants --role {host_app}` again" not in report.render()

    refusal = None
    try:
        await admin.execute(grants_sql(host_app))
    except asyncpg.RaiseError as exc:
        refusal = str(exc)
        await admin.execute("ROLLBACK")  # as psql's ON_ERROR_STOP leaves it: nothing committed
    # Its own rights on its tables, which the script's REVOKEs used to take away.
    assert await _host_rights(admin, host_app) == dict.fromkeys(
        ("SELECT", "INSERT", "UPDATE", "DELETE"), True
    )
    assert refusal is not None
    assert re.match(rf"role {host_app} owns (audit_logs|posts|users), ", refusal), refusal
    assert "grants --role pmd" in refusal
    assert await admin.fetchval(
        "SELECT rolcanlogin AND rolinherit FROM pg_roles WHERE rolname = $1", host_app
    )


async def test_grants_refuses_a_superuser_until_it_is_one_no_more(fresh_role: FreshRole) -> None:
    role, admin = fresh_role.name, fresh_role.admin
    await admin.execute(f"ALTER ROLE {role} SUPERUSER")
    report = await fresh_role.check()
    assert report.privileges is not None and not _privileges_fit(report)
    lines = report.privileges.lines()
    assert lines[0].startswith(f"  UNSAFE   role {role} is a superuser: it may alter")
    assert _refused_for(role, "is a superuser") in lines
    assert not any(f"grants --role {role}` again" in line for line in lines)
    with pytest.raises(asyncpg.RaiseError, match=f"role {role} is a superuser"):
        await admin.execute(grants_sql(role))
    await admin.execute("ROLLBACK")
    assert await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", role)
    # What the message says for a service role made superuser by mistake.
    await admin.execute(f"ALTER ROLE {role} NOSUPERUSER")
    await admin.execute(grants_sql(role))
    after = await fresh_role.check()
    assert after.privileges is not None
    assert after.privileges.lines() == [
        f"  ok       role {role} holds exactly what the service needs"
    ]


async def test_a_pooler_s_sessions_of_the_role_bound_an_idle_transaction(
    fresh_role: FreshRole,
) -> None:
    """A transaction-mode pooler passes no session setting on: the role's own default holds."""
    bare = await asyncpg.connect(fresh_role.url)
    try:
        shown = await bare.fetchval("SHOW idle_in_transaction_session_timeout")
    finally:
        await bare.close()
    assert shown == f"{IDLE_IN_TRANSACTION_SECONDS}s"


def test_the_cli_prints_the_script() -> None:
    def grants(*args: str) -> subprocess.CompletedProcess[str]:
        return run_python("-m", "pmd_service", "grants", *args)

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
