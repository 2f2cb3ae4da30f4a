"""PgBouncer in transaction mode in front of PostgreSQL: DATABASE_URL points at it, with
DATABASE_POOLER=pgbouncer, and DATABASE_DIRECT_URL (LISTEN, migrations) goes around it. A real
BDR, the posts list, actions and a live stream all work through it, with more client
connections than PgBouncer has server connections, so transactions of different clients share
server sessions as they do in production."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.core.db import DatabaseSetupError, check_search_path, settings_pool
from pmd_service.core.settings import Settings
from pmd_service.sse.endpoints import SSE_HUB
from pmd_service.web.app import create_app
from support import tools
from support.pgbouncer import PgBouncer, running_pgbouncer
from support.seeding import Factory
from support.sse import SSE, open_stream
from support.stack import WORKER, free_port, service_env
from tests.helpers import (
    download_zip,
    fetch_item,
    ids,
    ok,
    request_bdr,
    run_python,
    run_worker,
)
from tests.prerequisites import needs
from tests.procs import ARQ_WORKER, SERVE, run

pytestmark = needs("pgbouncer", tools.missing(["pgbouncer"]))

Client = TestClient[Any, Any]
SERVER_CONNECTIONS = 2  # PgBouncer's pool: fewer than the service's clients


@pytest.fixture
def pgbouncer(database_url: str) -> Iterator[PgBouncer]:
    """A PgBouncer (transaction mode) in front of the test database; its URL and log."""
    with running_pgbouncer(database_url, SERVER_CONNECTIONS) as bouncer:
        yield bouncer


@pytest.fixture
def pooled(settings: Settings, pgbouncer: PgBouncer) -> Settings:
    return msgspec.structs.replace(
        settings,
        database_url=pgbouncer.url,
        database_direct_url=settings.direct_url,
        database_pooler="pgbouncer",
        db_pool_max=8,
        worker_db_pool_max=6,
    )


async def test_a_bdr_lists_actions_and_a_stream_through_pgbouncer(
    pgbouncer: PgBouncer,
    pooled: Settings,
    aiohttp_client: AiohttpClient,
    factory: Factory,
    pool: asyncpg.Pool,
    redis_clean: None,
) -> None:
    client: Client = await aiohttp_client(create_app(pooled))
    owner = await factory.user()
    mod = await factory.user(roles=["user", "moderator"])
    posts = [await factory.post(owner, title=f"Art {i}") for i in range(6)]

    # Many transactions at once over two server connections: each must find its statements.
    lists = await asyncio.gather(
        *[client.get("/api/pmd/posts", headers=owner.auth) for _ in range(30)]
    )
    for resp in lists:
        assert resp.status == 200, await resp.text()
        assert len((await resp.json())["items"]) == 6
    actions = await asyncio.gather(
        ok(client, owner, "hide", [posts[0].id]),
        ok(client, mod, "hide", [posts[1].id], target_sqid=owner.sqid),
        ok(client, owner, "hide", [posts[2].id]),
    )
    assert all(a for a in actions)
    await ok(client, owner, "unhide", [posts[0].id, posts[2].id])

    async with (
        aiohttp.ClientSession() as http,
        open_stream(http, str(client.make_url(SSE)), owner.auth) as stream,
    ):
        await stream.opening()
        wanted = [p.id for p in posts[2:]]
        item = await request_bdr(client, owner, wanted, include_comments=True)
        await asyncio.gather(*[run_worker(pooled) for _ in range(2)])
        done = await fetch_item(client, owner, item["id"])
        assert done["status"] == "ready", done
        archive = await download_zip(client, owner, item["id"])
        assert len([n for n in archive.namelist() if n.startswith("artworks/")]) == 4
        # The stream (its LISTEN connection direct) saw every download event the table holds.
        events = await pool.fetch(
            "SELECT id FROM stream_events WHERE user_id = $1 AND kind = 'bdr' ORDER BY id",
            owner.id,
        )
        got = ids(await stream.updates(len(events)))
        assert got == [r["id"] for r in events]

    # The pooled connections went through PgBouncer; the LISTEN connection did not: its
    # backend is one of PostgreSQL's own, under its own name.
    assert "login attempt" in pgbouncer.log.read_text()
    listener = client.app[SSE_HUB]._conn
    assert listener is not None
    name = await pool.fetchval(
        "SELECT application_name FROM pg_stat_activity WHERE pid = $1", listener.get_server_pid()
    )
    assert name == "pmd-sse-listener"


async def test_a_pooler_without_the_service_search_path_is_refused(
    pooled: Settings, pool: asyncpg.Pool
) -> None:
    """PgBouncer cannot pass a search_path per connection: the role's or database's must be
    the service's, or the server refuses to start rather than query the wrong schema."""
    other = msgspec.structs.replace(pooled, pmd_schema="pmd_elsewhere")
    through = await settings_pool(other, "pmd-test", min_size=1, max_size=1)
    try:
        with pytest.raises(DatabaseSetupError, match="ALTER ROLE"):
            await check_search_path(through, other)
        await check_search_path(through, pooled)  # the test database's own default fits
    finally:
        await through.close()


async def test_without_the_pooler_setting_pgbouncer_refuses_the_connection(
    pooled: Settings,
) -> None:
    """What DATABASE_POOLER=pgbouncer is for: without it the pool sends a search_path at
    connection start, which PgBouncer refuses."""
    plain = msgspec.structs.replace(pooled, database_pooler="none")
    with pytest.raises(asyncpg.PostgresError, match="search_path"):
        await settings_pool(plain, "pmd-test", min_size=1, max_size=1)


async def test_a_ticket_and_a_stream_through_pgbouncer(
    pooled: Settings, aiohttp_client: AiohttpClient, factory: Factory, redis_clean: None
) -> None:
    client: Client = await aiohttp_client(create_app(pooled))
    user = await factory.user()
    resp = await client.post("/api/pmd/bdr/sse-ticket", headers=user.auth)
    assert resp.status == 200
    ticket = (await resp.json())["ticket"]
    async with (
        aiohttp.ClientSession() as http,
        open_stream(http, str(client.make_url(SSE)), params={"ticket": ticket}) as s,
    ):
        assert [m.event for m in await s.opening()][-1] == "connected"


@pytest.mark.parametrize(
    "argv", [WORKER, ARQ_WORKER, SERVE], ids=["python -m worker", "arq", "server x2"]
)
async def test_a_pooler_without_the_search_path_stops_each_process_with_one_line(
    pooled: Settings, tmp_path: Path, argv: list[str]
) -> None:
    """The refusal above, as the processes meet it: one line and exit status 2 from both forms
    of the worker, and from a server of two processes (found once, before they start)."""
    env = service_env(
        pooled,
        tmp_path,
        PMD_SCHEMA="pmd_elsewhere",
        SERVER_PROCESSES="2",
        PORT=str(free_port()),
        LOG_FORMAT="text",
    )
    code, proc = await run(argv, env, within=60)
    assert code == 2, proc.err
    problems = [line for line in proc.err if "ALTER ROLE" in line]
    assert len(problems) == 1, proc.err
    assert "Traceback" not in "\n".join(proc.err + proc.out)


@pytest.fixture
def one_server_connection(database_url: str) -> Iterator[str]:
    """A PgBouncer with one server connection: every client's transactions share it."""
    with running_pgbouncer(database_url, 1) as bouncer:
        yield bouncer.url


def test_comment_feeds_of_two_workers_share_one_pgbouncer_server_connection(
    one_server_connection: str,
) -> None:
    """A build's comments and reactions are read through a cursor (zipbuild/row_feed.py). asyncpg's
    own cursors prepare a named statement, numbered per process, that outlives the transaction
    on PgBouncer's server connection: the next worker process to open a cursor there got
    "prepared statement __asyncpg_stmt_…__ already exists" and its BDR failed (found by the
    cluster run). Two worker processes, one after the other, one server connection shared."""
    for rows in (7, 1_200, 1_200):  # one short batch; then several, the last one short
        run = run_python("-c", FEED_ONCE, one_server_connection, str(rows))
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.split() == [str(rows), str(rows * (rows + 1) // 2)]


# What a worker process does with one feed: the service's pool through the pooler, the rows
# taken on a thread as the ZIP build takes them; prints the row count and the sum.
FEED_ONCE = """
import asyncio, sys, threading
from pmd_service.core.db import create_pool
from pmd_service.zipbuild.row_feed import RowFeed

async def main(url, rows):
    pool = await create_pool(url, "pmd-test", min_size=1, max_size=1, pooler=True)
    sql = "SELECT g AS post_id FROM generate_series(1, $1::int) g ORDER BY g"
    feed = RowFeed(pool, asyncio.get_running_loop(), threading.Event(), sql, rows, batch=500)
    got = await asyncio.to_thread(lambda: [r["post_id"] for b in feed for r in b])
    await feed.aclose()
    await pool.close()
    print(len(got), sum(got))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""
