"""The service beside the host's database as the host's own migrations make it.

`tests/host_schema.sql` holds the host's tables (Makapix Club, api/alembic/versions): `json`
roles, audit and comment ids without defaults, posts with `updated_at`, shards of two and three
levels, and the host's own `batch_download_requests`. Here the service migrates into it, serves
owner and moderator, builds ZIPs, streams, cleans up and checks the host, and the host's schema
(`pg_dump --schema-only`) is the same byte for byte before and after.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import uuid
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.core.db import create_pool
from pmd_service.core.migrate import migrate
from pmd_service.core.settings import Settings
from pmd_service.upkeep.cleanup import daily_cleanup
from pmd_service.web.app import create_app
from support.seeding import HostSite
from support.sse import SSE, open_stream
from tests.helpers import announced, direct, pg_program, run_worker

Client = TestClient[Any, Any]


def dump_host_schema(url: str) -> str:
    done = subprocess.run(
        [
            pg_program("pg_dump"),
            "--schema-only",
            "--schema=public",
            "--no-owner",
            "--no-privileges",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout


@pytest.fixture
async def beside_host(
    host_url: str, host_role_url: str, settings: Settings, redis_clean: None
) -> AsyncIterator[tuple[Settings, asyncpg.Pool, str]]:
    """(settings: the service as its `grants` role; the host's own pool, an admin's; the
    host's schema dump before the service migrated)."""
    before = dump_host_schema(host_url)
    host_settings = direct(settings, host_role_url)
    pool = await create_pool(host_url, "pmd-test-host", search_path=host_settings.search_path)
    try:
        role_conn = await asyncpg.connect(
            host_role_url, server_settings={"search_path": host_settings.search_path}
        )
        try:
            applied = await migrate(role_conn, host_settings)
        finally:
            await role_conn.close()
        assert "standalone host tables" not in applied  # the host's tables are there
        yield host_settings, pool, before
    finally:
        await pool.close()


async def test_migrations_touch_no_host_table_and_block_no_write(host_url: str) -> None:
    """Applied while the host writes (an open transaction holding row locks on users and posts,
    as any request of the host does), the migrations neither wait for it nor lock a host table."""
    # Only the schemas and search path matter here: nothing connects to Redis.
    settings = Settings(database_url=host_url, redis_url="redis://unused", jwt_secret_key="x" * 40)
    host = await asyncpg.connect(host_url)
    watcher = await asyncpg.connect(host_url)
    migrator = await asyncpg.connect(
        host_url, server_settings={"search_path": settings.search_path}
    )
    try:
        user_id = await host.fetchval(
            "INSERT INTO users (user_key, handle, handle_normalized, email)"
            " VALUES (gen_random_uuid(), 'w', 'w', 'w@x') RETURNING id"
        )
        await host.execute(
            "INSERT INTO posts (storage_key, owner_id, title) VALUES (gen_random_uuid(), $1, 't')",
            user_id,
        )
        tx = host.transaction()
        await tx.start()
        await host.execute("UPDATE users SET bio = 'busy' WHERE id = $1", user_id)
        await host.execute("UPDATE posts SET title = 'busy' WHERE owner_id = $1", user_id)
        migrating = asyncio.create_task(migrate(migrator, settings))
        host_locks: set[str] = set()
        while not migrating.done():
            rows = await watcher.fetch(
                """SELECT c.relname, l.mode, l.granted FROM pg_locks l
                   JOIN pg_class c ON c.oid = l.relation
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'public' AND l.pid = $1""",
                migrator.get_server_pid(),
            )
            host_locks |= {f"{r['relname']} {r['mode']}" for r in rows}
            await asyncio.sleep(0)
        applied = await asyncio.wait_for(migrating, timeout=20)
        assert applied and "standalone host tables" not in applied
        assert host_locks == set()  # the migrator took no lock on a host table
        await tx.rollback()
    finally:
        for conn in (host, watcher, migrator):
            await conn.close()


async def test_owner_moderator_worker_stream_and_cleanup_on_the_hosts_schema(
    beside_host: tuple[Settings, asyncpg.Pool, str],
    host_url: str,
    aiohttp_client: AiohttpClient,
) -> None:
    settings, pool, before = beside_host
    site = HostSite(pool, settings)
    owner = await site.user("painter", ["user"])
    mod = await site.user("keeper", ["user", "moderator"])
    posts = [await site.post(owner, n, legacy=n % 2 == 0) for n in range(6)]
    assert {len(p.shard.split("/")) for p in posts} == {2, 3}  # both of the host's layouts
    comment_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO public.comments (id, post_id, author_id, body) VALUES ($1, $2, $3, 'nice')",
        comment_id,
        posts[0].id,
        mod.id,
    )
    await pool.execute(
        "INSERT INTO public.reactions (post_id, user_id, emoji) VALUES ($1, $2, '🔥')",
        posts[0].id,
        mod.id,
    )
    license_id = await pool.fetchval(
        "INSERT INTO public.licenses (identifier, title, canonical_url, badge_path)"
        " VALUES ('CC-BY-4.0', 'Attribution', 'https://creativecommons.org', '/b.svg') RETURNING id"
    )
    # The host's own PMD: its table and its ZIP, which the service must leave alone.
    host_bdr = uuid.uuid4()
    host_zip = settings.vault_path / "bdr" / owner.sqid / f"{host_bdr}.zip"
    host_zip.parent.mkdir(parents=True)
    host_zip.write_bytes(b"PK host zip")
    await pool.execute(
        """INSERT INTO public.batch_download_requests (id, user_id, post_ids, artwork_count,
               status, file_path, completed_at, expires_at)
           VALUES ($1, $2, $3, 1, 'ready', $4, now(), now() + interval '3 days')""",
        host_bdr,
        owner.id,
        [posts[0].id],
        f"bdr/{owner.sqid}/{host_bdr}.zip",
    )

    client: Client = await aiohttp_client(create_app(settings))
    ids = [p.id for p in posts]

    # The owner: the list, a hide, a license, a delete and a restore.
    listed = await (await client.get("/api/pmd/posts", headers=owner.auth)).json()
    assert [i["id"] for i in listed["items"]] == ids
    assert listed["items"][0]["comment_count"] == 1 and listed["items"][0]["reaction_count"] == 1
    ok = await client.post(
        "/api/pmd/action", json={"action": "hide", "post_ids": ids[:2]}, headers=owner.auth
    )
    assert (await ok.json())["message"] == "Hidden 2 post(s)"
    ok = await client.post(
        "/api/pmd/license", json={"post_ids": ids[:3], "license_id": license_id}, headers=owner.auth
    )
    assert (await ok.json())["message"] == "Changed license to CC-BY-4.0 for 3 post(s)"
    for action in ("delete", "restore"):
        ok = await client.post(
            "/api/pmd/action", json={"action": action, "post_ids": ids[5:]}, headers=owner.auth
        )
        assert ok.status == 200, await ok.text()
    updated = await pool.fetch("SELECT id, updated_at FROM public.posts ORDER BY id")
    assert {r["id"] for r in updated if r["updated_at"]} == {*ids[:3], ids[5]}

    # A moderator (json roles): a hide as the moderator, a delete the owner cannot undo, audited
    # with ids the service names (the host's audit_logs.id has no default).
    ok = await client.post(
        f"/api/pmd/action?target_sqid={owner.sqid}",
        json={"action": "hide", "post_ids": ids[2:3]},
        headers=mod.auth,
    )
    assert ok.status == 200, await ok.text()
    ok = await client.post(
        f"/api/pmd/action?target_sqid={owner.sqid}",
        json={"action": "delete", "post_ids": ids[4:5]},
        headers=mod.auth,
    )
    assert ok.status == 200, await ok.text()
    refused = await client.post(
        "/api/pmd/action", json={"action": "restore", "post_ids": ids[4:5]}, headers=owner.auth
    )
    assert refused.status == 400 and "moderator" in (await refused.json())["detail"]
    flags = await pool.fetchrow("SELECT hidden_by_mod FROM public.posts WHERE id = $1", ids[2])
    assert flags is not None and flags["hidden_by_mod"]
    audit = await pool.fetch("SELECT id, action FROM public.audit_logs ORDER BY created_at")
    assert [a["action"] for a in audit] == ["pmd_batch_hide", "pmd_batch_delete"]

    # A download of artworks in both shard layouts, watched on the stream, byte-equal.
    wanted = [p for p in posts if p.id != ids[4]]
    async with (
        aiohttp.ClientSession() as http,
        open_stream(http, str(client.make_url(SSE)), headers=owner.auth) as stream,
    ):
        await stream.opening()
        resp = await client.post(
            "/api/pmd/bdr",
            json={
                "post_ids": [p.id for p in wanted],
                "include_comments": True,
                "include_reactions": True,
            },
            headers=owner.auth,
        )
        assert resp.status == 202, await resp.text()
        item = await resp.json()
        await announced(client, item["id"])
        await run_worker(settings)
        statuses = [
            m.json()["status"]
            for m in await stream.until(
                lambda m: m.event == "bdr_update" and m.json()["status"] == "ready"
            )
            if m.event == "bdr_update" and m.json()["id"] == item["id"]
        ]
    assert statuses[0] == "pending" and statuses[-1] == "ready"
    ready = await (await client.get(f"/api/pmd/bdr/{item['id']}", headers=owner.auth)).json()
    assert ready["skipped"] == []
    download = await client.get(ready["download_url"], headers=mod.auth)  # as given, moderator
    assert download.status == 200, await download.text()
    archive = zipfile.ZipFile(io.BytesIO(await download.read()))
    assert archive.testzip() is None
    for post in wanted:
        assert archive.read(f"artworks/{post.sqid}.png") == post.data
    assert str(comment_id) in archive.read("comments.json").decode()
    assert "🔥" in archive.read("reactions.json").decode()
    own_zip = settings.zip_path / owner.sqid / f"pmd-{item['id']}.zip"
    assert hashlib.sha256(own_zip.read_bytes()).hexdigest() == await pool.fetchval(
        "SELECT file_sha256 FROM batch_download_requests WHERE id = $1::uuid", item["id"]
    )

    # A full export on the host's own tables: every live artwork (hidden ones too), both shard
    # layouts, the licenses set above, one bag.
    resp = await client.post("/api/pmd/exports", json={}, headers=owner.auth)
    assert resp.status == 202, await resp.text()
    export_id = (await resp.json())["id"]
    await run_worker(settings)
    export = await (await client.get(f"/api/pmd/exports/{export_id}", headers=owner.auth)).json()
    assert export["status"] == "ready" and export["skipped"] == [], export
    (part,) = export["parts"]
    got = await client.get(part["download_url"], headers=owner.auth)
    assert got.status == 200, await got.text()
    bag = zipfile.ZipFile(io.BytesIO(await got.read()))
    assert bag.testzip() is None
    root = f"makapix-export-{export_id[:8]}-part-1/"
    meta = json.loads(bag.read(root + "data/metadata.json"))
    live = [p for p in posts if p.id != ids[4]]
    assert sorted(a["sqid"] for a in meta["artworks"]) == sorted(p.sqid for p in live)
    for post in live:
        assert bag.read(f"{root}data/artworks/{post.sqid}.png") == post.data
    licensed = {a["sqid"]: a["license"] for a in meta["artworks"]}
    assert {licensed[p.sqid] for p in posts[:3] if p.id != ids[4]} == {"CC-BY-4.0"}
    await client.delete(f"/api/pmd/exports/{export_id}", headers=owner.auth)

    # The daily cleanup, with every date far in the future: the service's ZIP goes, the host's
    # stays, and so do the host's rows.
    from pmd_service.jobs.context import job_context

    await pool.execute("UPDATE batch_download_requests SET expires_at = now() - interval '1 s'")
    old = datetime.now().timestamp() - 7200
    for path in (own_zip, host_zip):
        os.utime(path, (old, old))
    async with job_context(settings) as ctx:
        summary = await daily_cleanup(ctx)
    assert summary["expired"] == 1
    assert not own_zip.exists() and host_zip.read_bytes() == b"PK host zip"
    host_rows = await pool.fetch("SELECT id, status FROM public.batch_download_requests")
    assert [(r["id"], r["status"]) for r in host_rows] == [(host_bdr, "ready")]

    # Nothing of the host's schema changed, whatever ran.
    assert dump_host_schema(host_url) == before
