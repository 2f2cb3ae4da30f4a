"""The cut-over from the host's own PMD, on the host's schema: nothing a user asked for is lost."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core.db import create_pool
from pmd_service.core.migrate import migrate
from pmd_service.core.queue import create_redis
from pmd_service.core.settings import Settings
from pmd_service.host.cutover import import_host_bdrs
from pmd_service.jobs.cleanup import cleanup_expired_bdrs
from pmd_service.jobs.context import job_context
from pmd_service.web.app import create_app
from tests.helpers import CHECKOUT, SECRET, HostPost, HostSite, HostUser, run_worker

Client = TestClient[Any, Any]

SQL_HOST_BDR = """
INSERT INTO public.batch_download_requests
    (id, user_id, post_ids, artwork_count, status, file_path, file_size_bytes, send_email,
     created_at, completed_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() - interval '2 hours', $9, $10)
"""


@pytest.fixture
async def host(
    host_url: str, settings: Settings, redis_clean: None
) -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    host_settings = replace(settings, database_url=host_url)
    pool = await create_pool(host_url, "pmd-test-host", search_path=host_settings.search_path)
    async with pool.acquire() as conn:
        await migrate(conn, host_settings)
    yield host_settings, pool
    await pool.close()


async def _host_bdr(
    pool: asyncpg.Pool, settings: Settings, user: HostUser, posts: list[HostPost], status: str,
    *, expires_in_days: float = 3, count: int | None = None, zip_bytes: bytes | None = None,
) -> uuid.UUID:  # fmt: skip
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
        SQL_HOST_BDR, bdr_id, user.id, [p.id for p in posts],
        len(posts) if count is None else count, status, file_path,
        len(zip_bytes) if zip_bytes else None, status == "pending", completed, expires,
    )  # fmt: skip
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
    old = await _host_bdr(pool, settings, owner, posts, "ready", expires_in_days=-1,
                          zip_bytes=b"PK old")  # fmt: skip
    failed = await _host_bdr(pool, settings, owner, posts, "failed")
    too_many = await _host_bdr(pool, settings, owner, posts, "pending", count=200)
    host_rows = await pool.fetch("SELECT * FROM public.batch_download_requests ORDER BY id")

    redis = create_redis(settings.redis_url or "")
    try:
        async with pool.acquire() as conn:
            dry = await import_host_bdrs(conn, redis, settings.vault_path, "public", apply=False)
            assert await conn.fetchval("SELECT count(*) FROM batch_download_requests") == 0
            applied = await import_host_bdrs(conn, redis, settings.vault_path, "public", apply=True)
            again = await import_host_bdrs(conn, redis, settings.vault_path, "public", apply=True)
    finally:
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
    assert await pool.fetchval(
        "SELECT count(*) FROM batch_download_requests WHERE email_sent_at IS NULL AND status = 'ready'"
        " AND send_email"
    ) == 0  # fmt: skip

    # Removed by the user, or expired by the cleanup: the row goes, the host's file stays.
    assert (await client.delete(f"/api/pmd/bdr/{served}", headers=auth)).status == 204
    await pool.execute(
        "UPDATE batch_download_requests SET expires_at = now() - interval '1 s' WHERE id = $1",
        served_2,
    )
    async with job_context(settings) as ctx:
        assert (await cleanup_expired_bdrs(ctx))["expired"] == 1
    rows = await pool.fetch(
        "SELECT id, status FROM batch_download_requests WHERE id = ANY($1::uuid[])",
        [served, served_2],
    )
    statuses = {r["id"]: r["status"] for r in rows}
    assert statuses == {served: "expired", served_2: "expired"}
    for bdr_id in (served, served_2):
        assert (settings.vault_path / "bdr" / owner.sqid / f"{bdr_id}.zip").exists()


def test_cli_dry_run_then_apply(host_url: str, redis_url: str, tmp_path: Any) -> None:
    env = os.environ | {"DATABASE_URL": host_url, "REDIS_URL": redis_url, "JWT_SECRET_KEY": SECRET,
                        "VAULT_PATH": str(tmp_path / "vault"), "PMD_DATA_DIR": str(tmp_path)}  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pmd_service", "import-host-bdrs", *args],
            env=env, capture_output=True, text=True, timeout=60, cwd=CHECKOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    dry = run()
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["applied"] is False
    assert "dry run" in dry.stderr
    applied = run("--apply")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["applied"] is True
    bad = run("--bogus")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
