"""The working files an artist keeps (issue 45): each post's `.mkpx` layers file in a BDR ZIP
and in every export part, the host's upscaled copy on request, read from the vault folder, over
ARTWORK_BASE_URL and from the artwork store (SeaweedFS) by the host's own relative paths; a
layers file the host declares but that is missing is a skipped file, never a failed job.
Real PostgreSQL, Redis and SeaweedFS; the worker is arq's, in burst mode; bags are validated
with bagit-python."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import obstore
from aiohttp import web
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient, AiohttpServer

from pmd_service.core.objects import StoreUrl, open_store
from pmd_service.core.settings import Settings
from pmd_service.host.vault import (
    relative_artwork_path,
    relative_layers_path,
    relative_upscaled_path,
)
from pmd_service.web.app import create_app
from support.mailbox import Mailbox
from support.seaweed import ACCESS_KEY, REGION, SECRET_KEY, Seaweed
from support.seeding import Factory, PostRow, UserRow
from support.sse import SSE, open_stream
from tests.exports import ready_export, unpacked
from tests.helpers import Client, Served, after_worker, download_zip

KIB = 1024
MKPX = b"MKPX\x01"  # the host checks this signature on upload; any bytes travel here


def layers_bytes(post: PostRow, size: int = 3000) -> bytes:
    return MKPX + post.sqid.encode() + os.urandom(size)


async def attach_layers(
    pool: asyncpg.Pool, settings: Settings, post: PostRow, data: bytes, *, in_vault: bool = True
) -> None:
    """The host's attach: `mkpx_file_bytes` set and the file at `{vault}/mkpx/{shard}/{key}.mkpx`
    (`in_vault=False`: declared, but the file is not there)."""
    await pool.execute(
        "UPDATE posts SET mkpx_file_bytes = $2, mkpx_attached_at = now() WHERE id = $1",
        post.id,
        len(data),
    )
    if in_vault:
        path = settings.vault_path / relative_layers_path(post.shard, post.storage_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _ready_but_the_layers_of(item: dict[str, Any], post: PostRow) -> None:
    """A missing layers file never fails the download, nor skips its artwork: `item` is ready,
    naming `post`'s layers file as the one left out."""
    assert item["status"] == "ready", item
    assert item["skipped"] == [
        {"post_id": post.id, "public_sqid": post.sqid, "reason": "file_missing", "file": "layers"}
    ]


def put_upscaled(settings: Settings, post: PostRow, data: bytes) -> None:
    path = settings.vault_path / relative_upscaled_path(post.shard, post.storage_key)
    path.write_bytes(data)


def sha256sum_check(folder: Path, manifest: str) -> None:
    summed = subprocess.run(
        ["sha256sum", "--strict", "-c", manifest],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert summed.returncode == 0, summed.stdout + summed.stderr


async def test_bdr_holds_layers_beside_each_image_and_skips_a_missing_one(
    client: Client, factory: Factory, settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner = await factory.user()
    with_layers = await factory.post(owner, title="layered")
    declared_only = await factory.post(owner, title="declared, not in the vault")
    plain = await factory.post(owner, title="no layers")
    layers = layers_bytes(with_layers)
    await attach_layers(pool, settings, with_layers, layers)
    await attach_layers(pool, settings, declared_only, b"x" * 500, in_vault=False)
    ids = [with_layers.id, declared_only.id, plain.id]

    item = await after_worker(client, settings, owner, ids)
    assert item["include_layers"] is True  # the default
    _ready_but_the_layers_of(item, declared_only)
    archive = await download_zip(client, owner, item["id"])
    names = archive.namelist()
    assert f"artworks/{with_layers.sqid}.mkpx" in names
    assert archive.read(f"artworks/{with_layers.sqid}.mkpx") == layers
    assert not any(n.endswith(".mkpx") and with_layers.sqid not in n for n in names)
    meta = json.loads(archive.read("metadata.json"))
    files = {a["sqid"]: a["files"] for a in meta["artworks"]}
    assert files == {
        with_layers.sqid: {
            "artwork": f"artworks/{with_layers.sqid}.png",
            "layers": f"artworks/{with_layers.sqid}.mkpx",
        },
        declared_only.sqid: {"artwork": f"artworks/{declared_only.sqid}.png"},
        plain.sqid: {"artwork": f"artworks/{plain.sqid}.png"},
    }
    assert meta["skipped"] == []
    assert meta["skipped_files"] == [
        {
            "post_id": declared_only.id,
            "public_sqid": declared_only.sqid,
            "file": "layers",
            "reason": "file_missing",
        },
    ]
    # The root manifest covers the layers file too.
    archive.extractall(tmp_path)
    assert f"artworks/{with_layers.sqid}.mkpx" in (tmp_path / "manifest-sha256.txt").read_text()
    sha256sum_check(tmp_path, "manifest-sha256.txt")
    # Progress counts artworks, not files.
    done = await pool.fetchval(
        "SELECT progress_done FROM batch_download_requests WHERE id = $1::uuid", item["id"]
    )
    assert done == 3

    # Asked without them: none.
    item = await after_worker(client, settings, owner, ids, include_layers=False)
    assert item["status"] == "ready" and item["include_layers"] is False
    archive = await download_zip(client, owner, item["id"])
    assert not [n for n in archive.namelist() if n.endswith(".mkpx")]
    meta = json.loads(archive.read("metadata.json"))
    assert meta["skipped_files"] == []


async def test_a_missing_layers_file_is_named_by_the_item_its_event_and_counted_in_the_email(
    served: Served,
    session: aiohttp.ClientSession,
    factory: Factory,
    settings: Settings,
    pool: asyncpg.Pool,
    smtp: Mailbox,
) -> None:
    """Not only in metadata.json: the item (API and stream alike) names the post whose layers
    file is missing, and the email still counts its artwork as delivered."""
    server, client = served
    owner = await factory.user()
    missing, plain = await factory.post(owner), await factory.post(owner)
    await attach_layers(pool, settings, missing, b"x" * 700, in_vault=False)

    mailing = replace(settings, smtp_host=smtp.host, smtp_port=smtp.port)
    item = await after_worker(client, mailing, owner, [plain.id, missing.id], send_email=True)
    _ready_but_the_layers_of(item, missing)
    archive = await download_zip(client, owner, item["id"])
    assert missing.data is not None
    assert archive.read(f"artworks/{missing.sqid}.png") == missing.data
    assert not [n for n in archive.namelist() if n.endswith(".mkpx")]
    async with open_stream(session, str(server.make_url(SSE)), owner.auth) as stream:
        (event,) = [m.json() for m in await stream.opening() if m.event == "bdr_update"]
    assert event == item
    (message,) = smtp.messages
    assert message["Subject"] == "Your download of 2 artworks is ready"


async def test_export_parts_hold_layers_and_upscaled_copies_and_stay_valid_bags(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner = await factory.user()
    posts = [
        await factory.post(owner, title=f"Work {i}", data=os.urandom(8 * KIB)) for i in range(5)
    ]
    # The planner counts the layers: 8 KiB of image with 60 KiB of layers fills a part alone.
    heavy, light, missing = posts[1], posts[3], posts[4]
    heavy_layers, light_layers = layers_bytes(heavy, 60 * KIB), layers_bytes(light)
    await attach_layers(pool, small, heavy, heavy_layers)
    await attach_layers(pool, small, light, light_layers)
    await attach_layers(pool, small, missing, b"y" * 100, in_vault=False)
    upscaled = b"RIFF" + os.urandom(2 * KIB)
    put_upscaled(small, posts[0], upscaled)

    item = await ready_export(ex_client, small, owner, include_upscaled=True)
    assert item["include_upscaled"] is True
    assert item["skipped"] == [] and item["progress"] == {"done": 5, "total": 5}

    found: dict[str, dict[str, Any]] = {}
    skipped_files: list[dict[str, Any]] = []
    bags = await unpacked(ex_client, owner, item, tmp_path)  # each validated
    for part, bag in zip(item["parts"], bags, strict=True):
        meta = json.loads((bag / "data" / "metadata.json").read_text())
        found |= {a["sqid"]: a["files"] | {"part": part["number"]} for a in meta["artworks"]}
        skipped_files += meta["skipped_files"]
        if heavy.sqid in {a["sqid"] for a in meta["artworks"]}:
            assert part["artwork_count"] == 1  # planned alone: its layers counted
        assert part["file_size_bytes"] <= 64 * KIB or part["artwork_count"] == 1
        manifest = (bag / "manifest-sha256.txt").read_text()
        for files in meta["artworks"]:
            for name in files["files"].values():
                assert f"  data/{name}\n" in manifest

    assert found[heavy.sqid]["layers"] == f"layers/{heavy.sqid}.mkpx"
    assert found[posts[0].sqid]["upscaled"] == f"upscaled/{posts[0].sqid}.webp"
    assert "upscaled" not in found[posts[2].sqid]  # none made by the host: left out, not skipped
    assert "layers" not in found[missing.sqid]
    # Random bytes decode to no image: their palettes are skipped too, not asserted here.
    assert [s for s in skipped_files if s["file"] == "layers"] == [
        {
            "post_id": missing.id,
            "public_sqid": missing.sqid,
            "file": "layers",
            "reason": "file_missing",
        },
    ]

    def read(sqid: str, name: str) -> bytes:
        part = found[sqid]["part"]
        return (
            tmp_path / f"makapix-export-{item['id'][:8]}-part-{part}" / "data" / name
        ).read_bytes()

    assert read(heavy.sqid, f"layers/{heavy.sqid}.mkpx") == heavy_layers
    assert read(light.sqid, f"layers/{light.sqid}.mkpx") == light_layers
    assert read(posts[0].sqid, f"upscaled/{posts[0].sqid}.webp") == upscaled


async def origin_serving(aiohttp_server: AiohttpServer, files: dict[str, bytes]) -> str:
    """A real HTTP origin on loopback serving `files` by path (404 for anything else)."""

    async def handle(request: web.Request) -> web.Response:
        data = files.get(request.path.lstrip("/"))
        return web.Response(body=data) if data is not None else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    server = await aiohttp_server(app)
    return str(server.make_url("/")).rstrip("/")


async def _layers_elsewhere(
    factory: Factory, pool: asyncpg.Pool, settings: Settings
) -> tuple[UserRow, PostRow, PostRow, bytes]:
    """A new owner's two artworks, none of their files in the vault: one with layers (their
    bytes), one whose layers the host declares but nobody has."""
    owner = await factory.user()
    post, declared = await factory.post(owner), await factory.post(owner)
    layers = layers_bytes(post)
    await attach_layers(pool, settings, post, layers, in_vault=False)
    await attach_layers(pool, settings, declared, b"z", in_vault=False)
    for path in settings.vault_path.rglob("*.png"):
        path.unlink()
    return owner, post, declared, layers


async def _built_but_the_declared_layers(
    client: Client,
    worker: Settings,
    owner: UserRow,
    post: PostRow,
    declared: PostRow,
    layers: bytes,
) -> None:
    """A BDR of both, built by a worker on `worker`: ready, with `post`'s layers and the
    declared ones a skipped file."""
    item = await after_worker(client, worker, owner, [post.id, declared.id])
    _ready_but_the_layers_of(item, declared)
    archive = await download_zip(client, owner, item["id"])
    assert archive.read(f"artworks/{post.sqid}.mkpx") == layers
    meta = json.loads(archive.read("metadata.json"))
    assert [(s["post_id"], s["reason"]) for s in meta["skipped_files"]] == [
        (declared.id, "file_missing")
    ]


async def test_layers_over_artwork_base_url(
    client: Client,
    factory: Factory,
    settings: Settings,
    pool: asyncpg.Pool,
    aiohttp_server: AiohttpServer,
) -> None:
    owner, post, declared, layers = await _layers_elsewhere(factory, pool, settings)
    files = {relative_layers_path(post.shard, post.storage_key): layers}
    for p in (post, declared):
        assert p.data is not None
        files[relative_artwork_path(p.shard, p.storage_key, "png")] = p.data
    base_url = await origin_serving(aiohttp_server, files)  # where they are read from
    worker = replace(settings, artwork_base_url=base_url, job_retry_base_seconds=0)
    await _built_but_the_declared_layers(client, worker, owner, post, declared, layers)


async def test_layers_from_the_artwork_store(
    client: Client,
    factory: Factory,
    settings: Settings,
    pool: asyncpg.Pool,
    seaweed: Seaweed,
    s3_bucket: str,
    s3_prefix: str,
) -> None:
    s3 = replace(
        settings,
        aws_endpoint_url=seaweed.endpoint,
        aws_region=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    artworks = StoreUrl(s3_bucket, f"{s3_prefix}/vault")
    store = open_store(artworks, s3.s3_access)
    owner, post, declared, layers = await _layers_elsewhere(factory, pool, settings)
    for p in (post, declared):
        assert p.data is not None
        await obstore.put_async(store, relative_artwork_path(p.shard, p.storage_key, "png"), p.data)
    await obstore.put_async(store, relative_layers_path(post.shard, post.storage_key), layers)
    worker = replace(s3, artwork_store=str(artworks))
    await _built_but_the_declared_layers(client, worker, owner, post, declared, layers)


async def test_a_download_counts_its_layers_files_against_its_size_limit(
    aiohttp_client: AiohttpClient,
    factory: Factory,
    settings: Settings,
    pool: asyncpg.Pool,
    redis_clean: None,
) -> None:
    """Declared at the request, the layers files count: a download they would take past
    BDR_MAX_BYTES is a 400 at once (not a failure once built past it), and fits without them."""
    capped = replace(settings, bdr_max_bytes=8000)
    client = await aiohttp_client(create_app(capped))
    owner = await factory.user()
    posts = [await factory.post(owner, data=os.urandom(300)) for _ in range(3)]
    await attach_layers(pool, settings, posts[0], layers_bytes(posts[0], 10_000))
    ids = [p.id for p in posts]
    resp = await client.post("/api/pmd/bdr", json={"post_ids": ids}, headers=owner.auth)
    assert resp.status == 400, await resp.text()
    problem = await resp.json()
    assert problem["type"].endswith("too-large") and problem["size_bytes"] > 10_000
    item = await after_worker(client, capped, owner, ids, include_layers=False)
    assert item["status"] == "ready", item
