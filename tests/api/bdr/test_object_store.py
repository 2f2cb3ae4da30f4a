"""ZIPs and artworks in a real S3-compatible store (SeaweedFS), never a mock of one.

Every test here works under a prefix of its own in the run's bucket, with the server, the
worker (arq in burst mode) and the cleanup as they run in production.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import obstore
import pytest
from arq.worker import func
from msgspec.structs import replace
from obstore.store import S3Store

from pmd_service.api.keys import ZIP_FILES
from pmd_service.core.objects import StoreUrl, incomplete_uploads, open_store
from pmd_service.core.settings import ConfigError, Settings
from pmd_service.features.bdr.job import process_bdr
from pmd_service.features.bdr.job_sql import JOB_NAME
from pmd_service.host.vault import relative_artwork_path
from pmd_service.jobs.context import job_context
from pmd_service.upkeep import cleanup as cleanup_module
from pmd_service.upkeep.cleanup import daily_cleanup
from pmd_service.upkeep.sweep import sweep
from pmd_service.zipbuild.build import PART_BYTES, Entry, build, object_sink
from support.seaweed import ACCESS_KEY, REGION, SECRET_KEY, Seaweed
from support.seeding import Factory, PostRow
from support.stack import free_port
from tests.helpers import Client, after_worker, assert_problem, fetch_item, requested, run_worker


@pytest.fixture
def settings(settings: Settings, seaweed: Seaweed, s3_bucket: str, s3_prefix: str) -> Settings:
    """The suite's settings with ZIPs in the bucket (the app, factory and worker use these)."""
    return seaweed.settings(settings, s3_bucket, f"{s3_prefix}/zips")


def zip_store(settings: Settings) -> S3Store:
    bucket = settings.zip_bucket
    assert bucket is not None
    return open_store(bucket, settings.s3_access)


def keys(store: S3Store) -> list[str]:
    return sorted(meta["path"] for batch in obstore.list(store) for meta in batch)


async def ready_bdr(
    client: Client, factory: Factory, settings: Settings, n: int = 3
) -> tuple[Any, list[PostRow], dict[str, Any]]:
    owner, posts = await factory.owner_and_posts(n)
    item = await after_worker(client, settings, owner, [p.id for p in posts], include_comments=True)
    assert item["status"] == "ready", item
    return owner, posts, item


async def test_the_whole_path_through_the_bucket(
    client: Client, factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    """create → ZIP in the bucket → redirect → byte-equal download → expiry → purge."""
    owner, posts, item = await ready_bdr(client, factory, settings)
    store = zip_store(settings)
    row = await factory.pool.fetchrow(
        "SELECT file_path, file_size_bytes, file_sha256 FROM batch_download_requests"
        " WHERE id = $1::uuid",
        item["id"],
    )
    assert row is not None
    key = row["file_path"].removeprefix("bdr/")
    assert keys(store) == [key]  # nothing else: no temp object, no second copy
    assert key.startswith(f"{owner.sqid}/pmd-{item['id']}.")
    assert not settings.zip_path.exists() or not any(settings.zip_path.rglob("*.zip"))
    bucket = settings.zip_bucket
    assert bucket is not None
    assert await incomplete_uploads(bucket, settings.s3_access) == []

    resp = await client.get(item["download_url"], headers=owner.auth, allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Cache-Control"] == "private, no-store"
    signed = resp.headers["Location"]
    assert signed.startswith(f"{settings.aws_endpoint_url}/") and "X-Amz-Signature=" in signed
    assert "X-Amz-Expires=300" in signed
    async with aiohttp.ClientSession() as http, http.get(signed) as got:
        assert got.status == 200
        body = await got.read()
        # The browser saves the host's file name: the object carries it.
        assert got.headers["Content-Disposition"] == (
            f"attachment; filename=makapix-artworks-{item['id'][:8]}.zip"
        )
        assert got.headers["Content-Type"] == "application/zip"
    assert len(body) == row["file_size_bytes"] == item["file_size_bytes"]
    assert hashlib.sha256(body).hexdigest() == row["file_sha256"]
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    names = archive.namelist()
    for post in posts:
        assert archive.read(f"artworks/{post.sqid}.png") == post.data
    assert {"metadata.json", "comments.json"} <= set(names)
    # A signed URL for someone else's download is never handed out; a bad one is refused.
    other = await factory.user()
    assert (
        await client.get(f"/api/pmd/bdr/{item['id']}/download", headers=other.auth)
    ).status == 404
    async with aiohttp.ClientSession() as http, http.get(signed + "0") as got:
        assert got.status == 403

    await factory.pool.execute(
        "UPDATE batch_download_requests SET expires_at = now() - interval '1 minute'"
        " WHERE id = $1::uuid",
        item["id"],
    )
    summary = await daily_cleanup(worker_ctx)
    assert summary["expired"] == 1
    assert keys(store) == []
    resp = await client.get(item["download_url"], headers=owner.auth, allow_redirects=False)
    await assert_problem(resp, 410)
    await factory.pool.execute(
        "UPDATE batch_download_requests SET completed_at = now() - interval '15 days'"
        " WHERE id = $1::uuid",
        item["id"],
    )
    assert (await daily_cleanup(worker_ctx))["purged"] == 1
    assert (await client.get(f"/api/pmd/bdr/{item['id']}", headers=owner.auth)).status == 404


async def test_a_deleted_object_is_gone_and_the_row_expires(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, _, item = await ready_bdr(client, factory, settings, n=1)
    store = zip_store(settings)
    for key in keys(store):
        await obstore.delete_async(store, key)
    resp = await client.get(item["download_url"], headers=owner.auth, allow_redirects=False)
    await assert_problem(resp, 410)
    assert (await fetch_item(client, owner, item["id"]))["status"] == "expired"


async def test_delete_removes_the_object(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, _, item = await ready_bdr(client, factory, settings, n=1)
    resp = await client.delete(f"/api/pmd/bdr/{item['id']}", headers=owner.auth)
    assert resp.status == 204
    assert keys(zip_store(settings)) == []


@pytest.fixture
def proxy_settings(settings: Settings) -> Settings:
    return replace(settings, zip_download_mode="proxy")


async def test_proxy_mode_streams_with_ranges_and_validators(
    aiohttp_client: Any, factory: Factory, proxy_settings: Settings, redis_clean: None
) -> None:
    from pmd_service.web.app import create_app

    client = await aiohttp_client(create_app(proxy_settings))
    # A slow client's download is cut off by the store's silence, never by its length; the
    # calls about it (HEAD, DELETE, signing) by STORE_TIMEOUT_SECONDS (5 s; ZipFiles._call's
    # bound), with the client's own timeout a backstop at twice that, so the bound fires first.
    files = client.app[ZIP_FILES]
    assert files.store is not None and files.store.client_options is not None
    assert files.store.client_options.get("read_timeout") == "30000ms"
    assert files.store.client_options.get("timeout") == "604800000ms"
    assert files.meta is not None and files.meta.client_options is not None
    assert files.timeout == 5.0
    assert files.meta.client_options.get("timeout") == "10000ms"
    owner, _, item = await ready_bdr(client, factory, proxy_settings)
    url, auth = item["download_url"], owner.auth
    whole = await client.get(url, headers=auth)
    assert whole.status == 200
    body = await whole.read()
    assert len(body) == item["file_size_bytes"] == int(whole.headers["Content-Length"])
    assert whole.headers["Content-Disposition"] == (
        f"attachment; filename=makapix-artworks-{item['id'][:8]}.zip"
    )
    assert whole.headers["Accept-Ranges"] == "bytes"
    etag = whole.headers["ETag"]
    zipfile.ZipFile(io.BytesIO(body)).testzip()

    part = await client.get(url, headers={**auth, "Range": "bytes=10-109"})
    assert part.status == 206
    assert await part.read() == body[10:110]
    assert part.headers["Content-Range"] == f"bytes 10-109/{len(body)}"
    tail = await client.get(url, headers={**auth, "Range": "bytes=-50"})
    assert tail.status == 206 and await tail.read() == body[-50:]
    resumed = await client.get(url, headers={**auth, "Range": "bytes=100-", "If-Range": etag})
    assert resumed.status == 206 and await resumed.read() == body[100:]
    changed = await client.get(url, headers={**auth, "Range": "bytes=100-", "If-Range": '"x"'})
    assert changed.status == 200 and await changed.read() == body
    head = await client.head(url, headers=auth)
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(body)
    assert (await client.get(url, headers={**auth, "If-None-Match": etag})).status == 304
    past = await client.get(url, headers={**auth, "Range": f"bytes={len(body)}-"})
    problem = await assert_problem(past, 416)
    assert past.headers["Content-Range"] == f"bytes */{len(body)}"
    assert str(len(body)) in problem["detail"]


async def test_a_failed_build_aborts_its_upload(settings: Settings) -> None:
    """The chunks' iterator raises after a part went out: obstore aborts the upload, and
    nothing, complete or partial, is left in the bucket."""
    bucket = settings.zip_bucket
    assert bucket is not None
    store = zip_store(settings)

    def entries() -> Any:
        yield Entry(1, "artworks/a.png", data=os.urandom(PART_BYTES + 1024))
        raise OSError("the disk under the vault failed")

    with pytest.raises(OSError, match="disk under the vault"):
        await asyncio.to_thread(
            build,
            object_sink(store, "u/pmd-x.zip", {}),
            entries(),
            lambda a, s: [],
            lambda n: None,
            threading.Event(),
        )
    assert keys(store) == []
    assert await incomplete_uploads(bucket, settings.s3_access) == []


_KILLED_UPLOAD = """
import os, sys, time
import obstore
from pmd_service.core.objects import StoreUrl, S3Access, open_store
store = open_store(StoreUrl.parse(sys.argv[1], "ZIP_STORE"), S3Access(*sys.argv[2:4], sys.argv[4], os.environ["AWS_SECRET_ACCESS_KEY"], None))
def chunks():
    yield os.urandom(9 << 20)  # one part goes out
    print("part sent", flush=True)
    time.sleep(600)
obstore.put(store, sys.argv[5], chunks(), chunk_size=8 << 20)
"""


async def test_the_sweep_aborts_the_upload_of_a_killed_worker(
    factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    """A process SIGKILLed mid-upload leaves the upload open; no partial object is visible,
    and the sweep aborts it once the run is over (here: the row it was for is gone)."""
    bucket = settings.zip_bucket
    assert bucket is not None
    key = f"someone/pmd-{'0' * 8}-0000-4000-8000-{'0' * 12}.deadbeef.zip"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_UPLOAD,
        str(bucket),
        settings.aws_endpoint_url,
        REGION,
        ACCESS_KEY,
        key,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
    )
    try:
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"part sent\n"
        await asyncio.sleep(0.5)  # the part's request completes
    finally:
        proc.kill()
        await proc.wait()
    store = zip_store(settings)
    assert keys(store) == []  # never visible: the upload was not completed
    assert [u.key for u in await incomplete_uploads(bucket, settings.s3_access)] == [key]
    assert (await sweep(worker_ctx))["uploads_aborted"] == 1
    assert await incomplete_uploads(bucket, settings.s3_access) == []


async def test_cleanup_removes_orphans_under_its_prefix_only(
    client: Client,
    factory: Factory,
    settings: Settings,
    worker_ctx: dict[str, Any],
    seaweed: Seaweed,
    s3_bucket: str,
    s3_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner, _, item = await ready_bdr(client, factory, settings, n=1)
    store = zip_store(settings)
    kept = keys(store)
    orphan = f"{owner.sqid}/pmd-{item['id']}.0badc0de.zip"  # a run's ZIP no row points at
    foreign = f"{owner.sqid}/notes.txt"  # under the prefix, not a name the service gives
    await obstore.put_async(store, orphan, b"zip")
    await obstore.put_async(store, foreign, b"keep me")
    beside = open_store(StoreUrl(s3_bucket, f"{s3_prefix}/zipsy"), settings.s3_access)
    await obstore.put_async(beside, orphan, b"outside the prefix")  # "zips" is a prefix of it
    monkeypatch.setattr(cleanup_module, "TEMP_MAX_AGE_SECONDS", 0)
    summary = await daily_cleanup(worker_ctx)
    assert summary["orphan_zips_removed"] == 1
    assert keys(store) == sorted([*kept, foreign])
    assert keys(beside) == [orphan]


async def test_an_unreachable_store_is_retried_never_failed(
    client: Client, factory: Factory, settings: Settings
) -> None:
    down = replace(settings, aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    _, _, [item] = await requested(client, factory)
    # One attempt: arq schedules the next one (in 5 s), this burst does not wait for it.
    once = [func(process_bdr, name=JOB_NAME, max_tries=1, keep_result=0)]
    await run_worker(down, functions=once)
    row = await factory.pool.fetchrow(
        "SELECT status, attempts, retry_at FROM batch_download_requests WHERE id = $1::uuid",
        item["id"],
    )
    assert row is not None
    assert row["status"] == "processing" and row["attempts"] == 1 and row["retry_at"] is not None
    # The server answers and is ready meanwhile: readiness never asks the store.
    assert (await client.get("/readyz")).status == 200


async def test_artworks_read_from_a_bucket(
    client: Client, factory: Factory, settings: Settings, s3_bucket: str, s3_prefix: str
) -> None:
    """ARTWORK_STORE: read in request order with bounded concurrency; a missing object is
    skipped as file_missing, as a missing file is."""
    artworks = StoreUrl(s3_bucket, f"{s3_prefix}/vault")
    store = open_store(artworks, settings.s3_access)
    owner, posts = await factory.owner_and_posts(5)
    for post in posts[:-1]:  # the last one's object is missing
        rel = relative_artwork_path(post.shard, post.storage_key, "png")
        assert post.data is not None
        await obstore.put_async(store, rel, post.data)
    for path in settings.vault_path.rglob("*.png"):
        path.unlink()  # the vault is not where they are read from
    worker = replace(settings, artwork_store=str(artworks), artwork_fetch_concurrency=2)
    item = await after_worker(client, worker, owner, [p.id for p in reversed(posts)])
    assert item["status"] == "ready"
    assert item["skipped"] == [
        {"post_id": posts[-1].id, "public_sqid": posts[-1].sqid, "reason": "file_missing"}
    ]
    resp = await client.get(item["download_url"], headers=owner.auth, allow_redirects=False)
    async with aiohttp.ClientSession() as http, http.get(resp.headers["Location"]) as got:
        archive = zipfile.ZipFile(io.BytesIO(await got.read()))
    names = [n for n in archive.namelist() if n.startswith("artworks/")]
    assert names == [f"artworks/{p.sqid}.png" for p in reversed(posts[:-1])]
    for post in posts[:-1]:
        assert archive.read(f"artworks/{post.sqid}.png") == post.data


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"ZIP_STORE": "s3://Bad_Bucket"}, "is not a bucket name"),
        ({"ZIP_STORE": "s3://bucket/../up"}, "must be folder names"),
        ({"ZIP_STORE": "gs://bucket"}, "must be s3://bucket/prefix or file:///folder"),
        ({"ARTWORK_STORE": "file://relative"}, "file:///absolute/folder"),
        ({"ARTWORK_STORE": "s3://bucket", "ARTWORK_BASE_URL": "http://x"}, "not both"),
        ({"AWS_ENDPOINT_URL": "127.0.0.1:8333"}, "must start with http"),
        ({"ZIP_DOWNLOAD_MODE": "stream"}, "ZIP_DOWNLOAD_MODE"),
        ({"ZIP_SIGNED_URL_SECONDS": "5"}, "ZIP_SIGNED_URL_SECONDS"),
    ],
)
def test_store_settings_are_checked(env: dict[str, str], says: str) -> None:
    base = {
        "DATABASE_URL": "postgresql://x/y",
        "REDIS_URL": "redis://x",
        "JWT_SECRET_KEY": "k" * 32,
    }
    with pytest.raises(ConfigError, match=says):
        Settings.from_env(base | env)


def test_file_urls_name_the_folders(tmp_path: Path) -> None:
    base = {
        "DATABASE_URL": "postgresql://x/y",
        "REDIS_URL": "redis://x",
        "JWT_SECRET_KEY": "k" * 32,
    }
    got = Settings.from_env(
        base | {"ZIP_STORE": f"file://{tmp_path}/zips", "ARTWORK_STORE": f"file://{tmp_path}/v"}
    )
    assert (got.zip_path, got.vault_path) == (tmp_path / "zips", tmp_path / "v")
    assert got.zip_bucket is None and got.artwork_bucket is None
    assert "SECRET" not in repr(replace(got, aws_secret_access_key="SECRET"))


async def test_a_job_context_opens_the_stores(settings: Settings) -> None:
    async with job_context(settings) as ctx:
        assert ctx["pmd"].zips.store is not None


async def test_a_download_while_the_store_is_unreachable_is_503(
    aiohttp_client: Any, client: Client, factory: Factory, settings: Settings
) -> None:
    from pmd_service.web.app import create_app

    owner, _, item = await ready_bdr(client, factory, settings, n=1)
    down = replace(settings, aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    other = await aiohttp_client(create_app(down))
    resp = await other.get(item["download_url"], headers=owner.auth, allow_redirects=False)
    problem = await assert_problem(resp, 503)
    assert resp.headers["Retry-After"] == "30"
    assert "try again" in problem["detail"]
    # Nothing was concluded from the outage: the ZIP is still ready.
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"


async def test_a_browser_link_downloads_with_a_single_use_ticket(
    client: Client, factory: Factory, settings: Settings
) -> None:
    """The page lets the browser follow the link and save the file (no blob): the link carries
    a ticket instead of the Bearer header, good for one request."""
    owner, _, item = await ready_bdr(client, factory, settings, n=1)
    minted = await client.post(
        "/api/pmd/bdr/sse-ticket", headers=owner.auth, params={"bdr_id": item["id"]}
    )
    ticket = (await minted.json())["ticket"]
    url = f"/api/pmd/bdr/{item['id']}/download?ticket={ticket}"
    resp = await client.get(url, allow_redirects=False)
    assert resp.status == 302
    async with aiohttp.ClientSession() as http, http.get(resp.headers["Location"]) as got:
        assert got.status == 200 and len(await got.read()) == item["file_size_bytes"]
    again = await client.get(url, allow_redirects=False)
    await assert_problem(again, 401)
    assert (await client.get(f"/api/pmd/bdr/{item['id']}/download")).status == 401
