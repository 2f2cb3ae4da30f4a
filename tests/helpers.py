"""What many test modules share: constants, the worker in burst mode, request shortcuts."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import io
import pkgutil
import re
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.constants import job_key_prefix
from botocore.exceptions import ClientError
from redis.asyncio import Redis
from redis.exceptions import RedisError

import pmd_service
from pmd_service.api.keys import DB_POOL, REDIS
from pmd_service.core.codes import TABLE, Code, HostCode
from pmd_service.core.db import connect, create_pool
from pmd_service.core.migrate import apply_migrations
from pmd_service.core.settings import Settings
from pmd_service.features.bdr.job_sql import job_id
from pmd_service.features.posts.pace import SQL_SITE_SPEND
from support.mailbox import Mailbox
from support.seaweed import Seaweed, create_bucket
from support.seeding import Factory, PostRow, UserRow, bdr_row
from support.sse import Message
from support.stack import CHECKOUT as CHECKOUT  # server.py's folder, and .data's
from support.stack import create_database, drop_database, free_port
from support.stack import eventually as eventually  # the tests import it from here

if TYPE_CHECKING:
    from pmd_service.core.db import Conn

Client = TestClient[Any, Any]
Captured = subprocess.CompletedProcess[str]
SECRET = "test-secret-" + "x" * 40
TABLES = (
    "batch_download_requests, stream_events, exports, export_parts, moderator_deletions, audited_reads"
    ", cleanup_policy_runs, cleanup_policy_posts, cleanup_policies"
    ", audit_logs, bulk_action_posts, bulk_actions, write_spends, site_spends, export_schedules"
    ", reactions, comments, post_files, posts, licenses, users"
)
# TABLES and those whose keys point at them emptied, and the sequences they own restarted, as
# `TRUNCATE … RESTART IDENTITY CASCADE` would without making every table's and index's files
# anew at each test; a superuser's, as it turns the keys' triggers off to delete.
EMPTY_TABLES = f"""
DO $$
DECLARE
    emptied regclass[] := (
        WITH RECURSIVE t(oid) AS (
            SELECT unnest(string_to_array('{TABLES}', ', ')::regclass[])::oid
            UNION SELECT c.conrelid FROM pg_constraint c JOIN t ON c.confrelid = t.oid
            WHERE c.contype = 'f'
        ) SELECT array_agg(oid::regclass) FROM t);
    one regclass;
BEGIN
    PERFORM set_config('session_replication_role', 'replica', true);
    FOREACH one IN ARRAY emptied LOOP
        EXECUTE format('DELETE FROM %s', one);
    END LOOP;
    PERFORM setval(d.objid::regclass, 1, false) FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
    WHERE d.classid = 'pg_class'::regclass AND s.relkind = 'S' AND d.deptype IN ('a', 'i')
      AND d.refobjid = ANY(emptied);
END $$
"""


async def age_spends(conn: asyncpg.Pool | Conn, seconds: int) -> None:
    """Every spend of the write budgets, the site's too, made `seconds` earlier."""
    earlier = "make_interval(secs => $1)"
    await conn.execute(f"UPDATE write_spends SET spent_at = spent_at - {earlier}", seconds)
    await conn.execute(f"UPDATE site_spends SET second = second - {earlier}", seconds)


async def site_spent(
    conn: asyncpg.Pool | Conn, user_id: int, posts: int, *, background: bool = False
) -> None:
    """`posts` of the site's minute spent by a write of `user_id` (`background`: a policy's)."""
    spend = {"users": [user_id], "as_moderator": False, "posts": [posts], "background": background}
    await conn.fetchrow(*SQL_SITE_SPEND.bind(spend | {"short": 60.0, "long": 3600.0}))


def direct(settings: Settings, url: str, **changes: Any) -> Settings:
    """`settings` on `url` with no pooler in front (the suite's is the test database's only)."""
    return msgspec.structs.replace(
        settings, database_url=url, database_direct_url=None, database_pooler="none", **changes
    )


def on_port(url: str, port: int) -> str:
    """`url` (TCP, or a unix socket as the embedded server's) pointing at 127.0.0.1:`port`."""
    parts = urlsplit(url)
    auth = parts.username or ""
    if parts.password:
        auth += f":{parts.password}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "host"])
    return urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{port}", query=query))


class DatabaseRelay:
    """A TCP port in front of the test's PostgreSQL from `open()` to `cut()`."""

    def __init__(self, target: str, delay: float = 0.0) -> None:
        self.target, self.delay = target, delay  # each connection's seconds before it is relayed
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(self.delay)
        parts = urlsplit(self.target)
        socket_dir = dict(parse_qsl(parts.query)).get("host") or ""
        if socket_dir.startswith("/"):
            up = await asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{parts.port or 5432}")
        else:
            up = await asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 5432)
        self.writers += [writer, up[1]]
        for src, dst in ((reader, up[1]), (up[0], writer)):
            self.tasks.append(asyncio.create_task(_pipe(src, dst)))

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    with contextlib.suppress(OSError):
        dst.close()


def captured(
    command: list[str], timeout: float = 600, check: bool = False, **options: Any
) -> Captured:
    """`command` run to its end with no input (as CI runs it), its output as text."""
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        stdin=subprocess.DEVNULL,
        **options,
    )


def bucket_on(weed: Seaweed) -> str:
    # A gateway that answers before its filer is ready refuses a new bucket with a 400 a moment.
    for _ in range(20):
        with contextlib.suppress(ClientError):
            return asyncio.run(create_bucket(weed))
        time.sleep(0.5)
    return asyncio.run(create_bucket(weed))


def as_role(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}:{quote(password, safe='')}@{host}"))


async def grant_role(admin: asyncpg.Connection, role: str, password: str) -> None:
    from pmd_service.host.grants import grants_sql

    await admin.execute(grants_sql(role))
    await admin.execute(f"ALTER ROLE {role} PASSWORD '{password}'")


@contextlib.asynccontextmanager
async def admin_and_role(
    host_url: str, role_url: str
) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection, str]]:
    """An admin's connection to the host, the role's (its tables migrated), and the role's name."""
    admin = await asyncpg.connect(host_url)
    role_conn = await connect(role_url, "pmd-test", search_path='"pmd", "public"')
    try:
        await apply_migrations(role_conn)
        yield admin, role_conn, await role_conn.fetchval("SELECT current_user")
    finally:
        await role_conn.close()
        await admin.close()


async def _refusal(conn: asyncpg.Connection, sql: str) -> str | None:
    """Why this role may not run `sql`, if so: EXPLAIN checks privileges, runs nothing."""
    try:
        async with conn.transaction():
            explain = await conn.prepare("EXPLAIN " + sql)
            await explain.fetch(*[None] * len(explain.get_parameters()))
    except asyncpg.InsufficientPrivilegeError as exc:
        return str(exc)
    return None


async def refused(conn: asyncpg.Connection, statements: dict[str, str]) -> dict[str, str]:
    """The statements this role may not run, with why."""
    found: dict[str, str] = {}
    for name, sql in statements.items():
        if (why := await _refusal(conn, sql)) is not None:
            found[name] = why
    return found


def naming_first(statements: dict[str, str], column: str) -> list[str]:
    """The statements, those naming `column` first: the likely ones to need it, so that a check
    stopping at the first that does tries a few, not hundreds."""
    naming = re.compile(rf"\b{re.escape(column)}\b")
    return sorted(statements.values(), key=lambda sql: naming.search(sql) is None)


async def any_refused(conn: asyncpg.Connection, statements: dict[str, str], column: str) -> bool:
    """Whether this role may not run one of the statements (`naming_first`'s order)."""
    for sql in naming_first(statements, column):
        if await _refusal(conn, sql) is not None:
            return True
    return False


def scratch_database(prefix: str, search_path: bool = True) -> Any:
    """A fixture: the URL of a new database named `prefix` and a random tail, dropped after."""

    @pytest.fixture
    async def database(admin_database_url: str) -> AsyncIterator[str]:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        url = await create_database(admin_database_url, name, search_path=search_path)
        try:
            yield url
        finally:
            await drop_database(admin_database_url, name)

    return database


def mailing(settings: Settings, box: Mailbox, **more: Any) -> Settings:
    """`settings` that send their emails to `box`, and `more` changed."""
    return msgspec.structs.replace(settings, smtp_host=box.host, smtp_port=box.port, **more)


WORKER_FORMS = ("python -m pmd_service worker", "arq worker.WorkerSettings")


async def run_worker(settings: Settings, form: str = WORKER_FORMS[0], **overrides: Any) -> None:
    """Drain the queue with a real Worker in burst mode, made as `form` makes it."""
    from arq.worker import Worker, create_worker

    from pmd_service.jobs.arq_adapter import PmdWorker
    from pmd_service.worker import worker_options

    options = worker_options(settings) | {"cron_jobs": [], "poll_delay": 0.05} | overrides
    worker: Worker
    if form == WORKER_FORMS[0]:
        worker = PmdWorker(burst=True, handle_signals=False, **options)
    else:
        worker = create_worker(options, burst=True, handle_signals=False)
        assert type(worker).__name__ == "Worker"
    try:
        await worker.main()
    finally:
        await worker.close()


async def assert_problem(resp: Any, status: int, reason: str | None = None) -> dict[str, Any]:
    """The problem+json answer `resp` of `status`, and of `reason` with the host's code for it."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = await resp.json()
    assert body["status"] == status
    assert body["code"] in set(HostCode), body
    if reason is not None:
        assert body["details"]["reason"] == reason, body
        assert body["code"] == TABLE[Code(reason)].code, body
    assert body["type"].startswith("urn:pmd:problem:")
    assert body["title"] and len(body["detail"]) > 10
    return body


async def request_bdr(
    client: Client, user: UserRow, post_ids: list[int], **flags: Any
) -> dict[str, Any]:
    resp = await client.post(
        "/api/pmd/bdr", json={"post_ids": post_ids, **flags}, headers=user.auth
    )
    assert resp.status == 202, await resp.text()
    item: dict[str, Any] = await resp.json()
    assert resp.headers["Location"] == f"/api/pmd/bdr/{item['id']}"
    await announced(client, item["id"])
    return item


async def announced(client: Client, bdr_id: str) -> None:
    """Until the server has announced and enqueued a request, just after its reply."""
    await announced_in(client.app[DB_POOL], client.app[REDIS], bdr_id)


async def announced_in(pool: asyncpg.Pool, redis: Redis, bdr_id: str, within: float = 5) -> None:
    sql = "SELECT announced FROM batch_download_requests WHERE id = $1::uuid"
    await eventually(lambda: pool.fetchval(sql, bdr_id), within, f"BDR {bdr_id} announced", 0.005)
    key = f"{job_key_prefix}{job_id(uuid.UUID(bdr_id))}"
    # Redis down, or the job not there in time: the sweep enqueues it later.
    with contextlib.suppress(RedisError, OSError, AssertionError):
        await eventually(lambda: redis.exists(key), within, key, 0.005)


async def fetch_item(client: Client, user: UserRow, bdr_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/pmd/bdr/{bdr_id}", headers=user.auth)
    assert resp.status == 200
    item: dict[str, Any] = await resp.json()
    return item


async def download_zip(client: Client, user: UserRow, bdr_id: str) -> zipfile.ZipFile:
    resp = await client.get(f"/api/pmd/bdr/{bdr_id}/download", headers=user.auth)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/zip"
    assert resp.headers["Content-Disposition"] == (
        f"attachment; filename=makapix-artworks-{bdr_id[:8]}.zip"
    )
    body = await resp.read()
    assert int(resp.headers["Content-Length"]) == len(body)
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None  # every entry's CRC checks out
    return archive


async def requested(
    client: Client, factory: Factory, count: int = 1
) -> tuple[UserRow, PostRow, list[dict[str, Any]]]:
    """A new user, one artwork of theirs and `count` requests of it, still pending."""
    owner, [post] = await factory.owner_and_posts(1)
    items = [await request_bdr(client, owner, [post.id]) for _ in range(count)]
    return owner, post, items


async def built(
    client: Client, factory: Factory, settings: Settings, count: int = 1
) -> tuple[UserRow, PostRow, list[dict[str, Any]]]:
    """As `requested`, then the worker run over them: each is ready, its ZIP published."""
    owner, post, items = await requested(client, factory, count)
    await run_worker(settings)
    return owner, post, items


async def after_worker(
    client: Client, settings: Settings, owner: UserRow, post_ids: list[int], **flags: Any
) -> dict[str, Any]:
    item = await request_bdr(client, owner, post_ids, **flags)
    await run_worker(settings)
    return await fetch_item(client, owner, item["id"])


def zip_path(settings: Settings, owner: UserRow, bdr_id: str) -> Path:
    return settings.zip_path / owner.sqid / f"pmd-{bdr_id}.zip"


async def act(client: Client, user: UserRow, action: str, post_ids: list[int], **extra: Any) -> Any:
    return await client.post(
        "/api/pmd/action", json={"action": action, "post_ids": post_ids, **extra}, headers=user.auth
    )


async def posted(client: Client, user: UserRow, path: str, body: dict[str, Any]) -> Any:
    """The answer of a successful POST of `body` to /api/pmd/`path`."""
    resp = await client.post(f"/api/pmd/{path}", json=body, headers=user.auth)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def acted(
    client: Client, user: UserRow, action: str, post_ids: list[int], **extra: Any
) -> Any:
    """The answer of a successful action, its `undo` link in it."""
    return await posted(client, user, "action", {"action": action, "post_ids": post_ids, **extra})


async def undone(client: Client, user: UserRow, link: str) -> Any:
    """The answer of a successful undo by its `undo` link."""
    resp = await client.post(link, headers=user.auth)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def ok(client: Client, user: UserRow, action: str, post_ids: list[int], **extra: Any) -> Any:
    """The answer of a successful action, without its `undo` link (checked here)."""
    body = await acted(client, user, action, post_ids, **extra)
    undo = body.pop("undo")
    assert (undo is not None) == (body["changed_count"] > 0), body
    if undo is not None:
        assert undo.startswith("/api/pmd/actions/") and "/undo" in undo, undo
    return body


async def flag(factory: Factory, name: str, post_ids: list[int]) -> list[Any]:
    """Each post's flag `name`, in the order of `post_ids`."""
    flags = await factory.post_flags(post_ids)
    return [flags[i][name] for i in post_ids]


async def mixed_licenses(
    factory: Factory, by_ids: list[int], sa_ids: list[int]
) -> tuple[int, int, int]:
    """CC-BY on `by_ids`, then CC-BY-SA without remixing on `sa_ids`: values of each post's own
    for an undo to put back. The ids of CC-BY, CC-BY-SA and CC-BY-ND (remixing refused)."""
    by = await factory.license("CC-BY-4.0")
    sa = await factory.license("CC-BY-SA-4.0")
    nd = await factory.license("CC-BY-ND-4.0")
    await factory.pool.execute(
        "UPDATE posts SET license_id = $1 WHERE id = ANY($2::int[])", by, by_ids
    )
    await factory.pool.execute(
        "UPDATE posts SET license_id = $1, remixable = false WHERE id = ANY($2::int[])",
        sa,
        sa_ids,
    )
    return by, sa, nd


def succeeded(body: dict[str, Any], message: str, affected: int, changed: int) -> None:
    """`body`, an action's answer without its undo link, is a success of this message and counts."""
    assert body == {
        "success": True,
        "affected_count": affected,
        "message": message,
        "changed_count": changed,
    }, body


async def posts_page(client: Client, user: UserRow, query: str = "") -> dict[str, Any]:
    resp = await client.get(f"/api/pmd/posts?{query}", headers=user.auth)
    assert resp.status == 200, await resp.text()
    page: dict[str, Any] = await resp.json()
    return page


def run_python(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path = CHECKOUT,
    check: bool = False,
) -> Captured:
    """`python ARGS` with this interpreter, from the checkout unless `cwd` says, as `captured`."""
    return captured([sys.executable, *args], timeout, check, env=env, cwd=cwd)


async def event_ids(pool: asyncpg.Pool, user: UserRow, after: int = 0) -> list[int]:
    """The ids of the user's download events (`bdr_update`, as `ids` reads a stream's)."""
    rows = await pool.fetch(
        "SELECT id FROM stream_events WHERE user_id = $1 AND kind = 'bdr' AND id > $2 ORDER BY id",
        user.id,
        after,
    )
    return [r["id"] for r in rows]


def ids(messages: list[Message]) -> list[int]:
    return [int(m.id) for m in messages if m.event == "bdr_update" and m.id is not None]


async def ready_owing_email(client: Client, factory: Factory, owner: UserRow) -> str:
    """A ready BDR of one post with its email still owed: the id."""
    post = await factory.post(owner)
    item = await request_bdr(client, owner, [post.id], send_email=True)
    await factory.pool.execute(
        "UPDATE batch_download_requests SET status = 'ready', expires_at = now() + interval '1 day'"
        " WHERE id = $1::uuid",
        item["id"],
    )
    return str(item["id"])


@contextlib.asynccontextmanager
async def logging_pool(url: str, name: str) -> AsyncIterator[tuple[asyncpg.Pool, list[str]]]:
    """A pool of one connection to `url`, and every statement it is sent but its resets."""
    queries: list[str] = []
    pool = await create_pool(url, name, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            reset = conn.get_reset_query()
            conn.add_query_logger(lambda r: None if r.query == reset else queries.append(r.query))
        yield pool, queries
    finally:
        await pool.close()


def pg_program(name: str) -> str:
    """A PostgreSQL client program as new as the server: the embedded one's, else the PATH's."""
    spec = importlib.util.find_spec("pgserver")
    bundled = (
        Path(spec.origin).with_name("pginstall") / "bin" / name if spec and spec.origin else None
    )
    found = str(bundled) if bundled and bundled.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"no {name} on this machine")
    return found


def service_statements() -> dict[str, str]:
    """Every SQL_* statement of the package (a dict's or a tuple's one by one) but the entry
    modules'."""
    skip = {"dev", "demo", "embedded", "hostcheck", "migrate", "worker", "worker_settings"}
    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(pmd_service.__path__, "pmd_service."):
        if info.name.rsplit(".", 1)[-1] in skip:
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if not name.startswith("SQL_"):
                continue
            named = value.items() if isinstance(value, dict) else [("", value)]
            for key, held in named:
                for i, sql in enumerate(held if isinstance(held, tuple) else (held,)):
                    if isinstance(sql, str) and sql not in found.values():
                        # As plain text: asyncpg prepares no str subclass (core/named_sql.py).
                        at = f"{list(key) if key else ''}{[i] if isinstance(held, tuple) else ''}"
                        found[f"{info.name}.{name}{at}"] = str(sql)
    return found


# Seconds after which a wait counts as hung: a guard, not a performance claim.
HUNG = 30.0

Serve = Callable[..., Awaitable[TestServer]]
# A server started by `serve` with the test's settings, and a client of it.
Served = tuple[TestServer, Client]
# `small_app`: `small` with the changes named, and a client of an app on them.
SmallApp = Callable[..., Awaitable[tuple[Settings, Client]]]


class ServedLikeServerPy(TestServer):
    """A server run as `server.py` runs it, which does not cancel a handler whose client left."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        kwargs |= {"handler_cancellation": False, "shutdown_timeout": 1.0}
        return web.AppRunner(self.app, **kwargs)


async def mint_ticket(
    session: aiohttp.ClientSession, server: TestServer, user: UserRow, **query: str
) -> str:
    resp = await session.post(
        server.make_url("/api/pmd/bdr/sse-ticket"), headers=user.auth, params=query
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["expires_in"] == 30
    return str(body["ticket"])


async def insert_bdr(pool: asyncpg.Pool, user: UserRow, artworks: int = 128) -> str:
    return str(await bdr_row(pool, user.id, list(range(1, artworks + 1))))


async def step(pool: asyncpg.Pool, bdr_id: str) -> None:
    await pool.execute(
        "UPDATE batch_download_requests SET status = 'processing', progress_done = progress_done + 1"
        " WHERE id = $1::uuid",
        bdr_id,
    )
