"""The cut-over from the host's own PMD, on the host's schema: nothing a user asked for is lost."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import uuid
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.core.db import connect, create_pool
from pmd_service.core.migrate import migrate
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.features.bdr.cutover import import_host_bdrs
from pmd_service.host.grants import grants_sql
from pmd_service.jobs.context import job_context
from pmd_service.upkeep.cleanup import daily_cleanup
from pmd_service.web.app import create_app
from support.seeding import HostSite, PostRow, UserRow
from tests.helpers import SECRET, direct, pg_program, run_python, run_worker

Client = TestClient[Any, Any]

SQL_HOST_BDR = """
INSERT INTO public.batch_download_requests
    (id, user_id, post_ids, artwork_count, status, file_path, file_size_bytes, send_email,
     created_at, completed_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() - interval '2 hours', $9, $10)
"""


@pytest.fixture
async def host(
    host_url: str, host_role_url: str, settings: Settings, redis_clean: None
) -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    """(the service's settings: its role, with `grants --cutover`; the host's own pool)."""
    await _cutover_grants(host_url)
    host_settings = direct(settings, host_role_url)
    conn = await connect(host_role_url, "pmd-test", search_path=host_settings.search_path)
    try:
        await migrate(conn, host_settings)
    finally:
        await conn.close()
    pool = await create_pool(host_url, "pmd-test-host", search_path=host_settings.search_path)
    yield host_settings, pool
    await pool.close()


async def _cutover_grants(host_url: str) -> None:
    """`grants --cutover` for the role of `host_role_url`: SELECT on the host's own table."""
    conn = await asyncpg.connect(host_url)
    try:
        role = await conn.fetchval(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'pmd'"
        )
        await conn.execute(grants_sql(role, cutover=True))
    finally:
        await conn.close()


async def _host_bdr(
    pool: asyncpg.Pool,
    settings: Settings,
    user: UserRow,
    posts: list[PostRow],
    status: str,
    *,
    expires_in_days: float = 3,
    count: int | None = None,
    zip_bytes: bytes | None = None,
) -> uuid.UUID:
    """A row of the host's PMD; `zip_bytes`: its ZIP at `{vault}/bdr/{sqid}/{id}.zip`."""
    bdr_id = uuid.uuid4()
    file_path = f"bdr/{user.sqid}/{bdr_id}.zip" if status == "ready" else None
    if zip_bytes is not None and file_path is not None:
        path = settings.vault_path / file_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(zip_bytes)
    completed = datetime.now(UTC) if status in ("ready", "failed", "expired") else None
    expires = completed + timedelta(days=expires_in_days) if completed else None
    await pool.execute(
        SQL_HOST_BDR,
        bdr_id,
        user.id,
        [p.id for p in posts],
        len(posts) if count is None else count,
        status,
        file_path,
        len(zip_bytes) if zip_bytes else None,
        status == "pending",
        completed,
        expires,
    )
    return bdr_id


async def test_import_host_bdrs(
    host: tuple[Settings, asyncpg.Pool], aiohttp_client: AiohttpClient
) -> None:
    settings, pool = host
    site = HostSite(pool, settings)
    owner = await site.user("painter", ["user"])
    posts = [await site.post(owner, n, legacy=n == 0) for n in range(3)]
    pending = await _host_bdr(pool, settings, owner, posts, "pending")
    processing = await _host_bdr(pool, settings, owner, posts[:1], "processing")
    served = await _host_bdr(pool, settings, owner, posts, "ready", zip_bytes=b"PK host one")
    served_2 = await _host_bdr(pool, settings, owner, posts, "ready", zip_bytes=b"PK host two")
    gone = await _host_bdr(pool, settings, owner, posts, "ready")  # its ZIP is not there
    old = await _host_bdr(
        pool, settings, owner, posts, "ready", expires_in_days=-1, zip_bytes=b"PK old"
    )
    failed = await _host_bdr(pool, settings, owner, posts, "failed")
    too_many = await _host_bdr(pool, settings, owner, posts, "pending", count=200)
    host_rows = await pool.fetch("SELECT * FROM public.batch_download_requests ORDER BY id")

    redis = create_redis(settings.redis_url or "")
    conn = await connect(settings.direct_url, "pmd-test", search_path=settings.search_path)
    try:
        dry = await import_host_bdrs(conn, None, settings.vault_path, "public", apply=False)
        assert await conn.fetchval("SELECT count(*) FROM batch_download_requests") == 0
        applied = await import_host_bdrs(conn, redis, settings.vault_path, "public", apply=True)
        again = await import_host_bdrs(conn, redis, settings.vault_path, "public", apply=True)
    finally:
        await conn.close()
        await redis.aclose()
    expected = {
        "rebuilt": 2,
        "served_until_expiry": 2,
        "left_out": {
            "artwork_count not 1..128 or not the number of post_ids": 1,
            "failed at the host": 1,
            "ready but expired": 1,
            "ready but its ZIP is not in the vault": 1,
        },
    }
    for summary in (dry, applied):
        got = summary.as_json()
        assert {k: got[k] for k in expected} == expected, got
    assert sorted(applied.rebuilt) == sorted(map(str, (pending, processing)))
    assert sorted(applied.served) == sorted(map(str, (served, served_2)))
    assert {i for ids in applied.left_out.values() for i in ids} == {
        str(gone),
        str(old),
        str(failed),
        str(too_many),
    }
    assert again.as_json()["already_imported"] == 4
    assert again.rebuilt == again.served == [] and not dry.applied
    # The host's table is as it was.
    assert await pool.fetch("SELECT * FROM public.batch_download_requests ORDER BY id") == host_rows

    # The rebuilt ones: built by the service's worker from the same posts, same ids.
    await run_worker(settings)
    client: Client = await aiohttp_client(create_app(settings))
    auth = {"Authorization": f"Bearer {owner.token}"}
    for bdr_id, wanted in ((pending, posts), (processing, posts[:1])):
        item = await (await client.get(f"/api/pmd/bdr/{bdr_id}", headers=auth)).json()
        assert item["status"] == "ready", item
        body = await (await client.get(item["download_url"], headers=auth)).read()
        archive = zipfile.ZipFile(io.BytesIO(body))
        for post in wanted:
            assert archive.read(f"artworks/{post.sqid}.png") == post.data

    # The host's ready ZIPs: served as they are, with the service's headers.
    item = await (await client.get(f"/api/pmd/bdr/{served}", headers=auth)).json()
    resp = await client.get(item["download_url"], headers=auth)
    assert resp.status == 200 and await resp.read() == b"PK host one"
    assert resp.headers["Content-Disposition"] == (
        f"attachment; filename=makapix-artworks-{str(served)[:8]}.zip"
    )
    assert resp.headers["ETag"]
    ranged = await client.get(item["download_url"], headers={**auth, "Range": "bytes=3-6"})
    assert ranged.status == 206 and await ranged.read() == b"host"
    # No second email for what the host already announced.
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM batch_download_requests WHERE email_sent_at IS NULL AND status = 'ready'"
            " AND send_email"
        )
        == 0
    )

    # Removed by the user, or expired by the cleanup: the row goes, the host's file stays.
    assert (await client.delete(f"/api/pmd/bdr/{served}", headers=auth)).status == 204
    await pool.execute(
        "UPDATE batch_download_requests SET expires_at = now() - interval '1 s' WHERE id = $1",
        served_2,
    )
    async with job_context(settings) as ctx:
        assert (await daily_cleanup(ctx))["expired"] == 1
    rows = await pool.fetch(
        "SELECT id, status FROM batch_download_requests WHERE id = ANY($1::uuid[])",
        [served, served_2],
    )
    statuses = {r["id"]: r["status"] for r in rows}
    assert statuses == {served: "expired", served_2: "expired"}
    for bdr_id in (served, served_2):
        assert (settings.vault_path / "bdr" / owner.sqid / f"{bdr_id}.zip").exists()


# Rows written into the database's tables, as its backends report them (PostgreSQL 15 flushes a
# backend's counts at the latest when it exits). Not pg_stat_database's tup_*: they also count
# the catalog rows autovacuum's ANALYZE writes, whenever it runs.
SQL_WRITES = """
SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables
"""
SQL_OTHERS = """
SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


async def _writes(url: str) -> int:
    """The database's write count once every other backend (autovacuum's too) has gone and the
    count is steady."""
    conn = await asyncpg.connect(url)
    try:
        last = None
        for _ in range(100):
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            count: int = await conn.fetchval(SQL_WRITES)
            if count == last and await conn.fetchval(SQL_OTHERS) == 0:
                return count
            last = count
            await asyncio.sleep(0.1)
        raise AssertionError("the database's write count never settled")
    finally:
        await conn.close()


def _dump(url: str) -> str:
    """Schema and data, owners and privileges included."""
    return subprocess.run(
        [pg_program("pg_dump"), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    ).stdout


async def _seed_host_pmd(host_url: str, settings: Settings) -> None:
    pool = await create_pool(host_url, "pmd-test-host", min_size=1, max_size=2)
    try:
        site = HostSite(pool, settings)
        owner = await site.user("painter", ["user"])
        posts = [await site.post(owner, n, legacy=False) for n in range(2)]
        await _host_bdr(pool, settings, owner, posts, "pending")
        await _host_bdr(pool, settings, owner, posts, "ready", zip_bytes=b"PK host")
    finally:
        await pool.close()


async def test_cli_dry_run_writes_nothing_then_apply(
    host_url: str,
    host_role_url: str,
    settings: Settings,
    redis_url: str,
    redis_clean: None,
    tmp_path: Any,
) -> None:
    """Issue: the dry run said "nothing was written" but migrated first. Run before the
    service's first migration, with AUTO_MIGRATE on (the default), as the service's role."""
    await _seed_host_pmd(host_url, settings)
    await _cutover_grants(host_url)
    env = os.environ | {
        "DATABASE_URL": host_role_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET_KEY": SECRET,
        "VAULT_PATH": str(settings.vault_path),
        "PMD_DATA_DIR": str(tmp_path),
    }
    env.pop("AUTO_MIGRATE", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_python("-m", "pmd_service", "import-host-bdrs", *args, env=env)

    redis = create_redis(redis_url)
    try:
        dump, writes, keys = _dump(host_url), await _writes(host_url), await redis.dbsize()
        dry = run()
        assert dry.returncode == 0, dry.stderr
        summary = json.loads(dry.stdout)
        assert summary["applied"] is False
        assert (summary["rebuilt"], summary["served_until_expiry"]) == (1, 1)
        assert "dry run: nothing was written" in dry.stderr
        assert _dump(host_url) == dump
        assert await _writes(host_url) == writes
        assert await redis.dbsize() == keys == 0

        # The same measures see a write: --apply migrates, imports two rows and enqueues one.
        applied = run("--apply")
        assert applied.returncode == 0, applied.stderr
        assert json.loads(applied.stdout)["applied"] is True
        assert _dump(host_url) != dump
        assert await _writes(host_url) > writes
        assert await redis.dbsize() > 0
    finally:
        await redis.aclose()
    bad = run("--bogus")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
