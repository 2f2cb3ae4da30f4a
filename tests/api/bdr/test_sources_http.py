"""Artworks fetched over HTTP (ARTWORK_BASE_URL), against a real aiohttp origin on loopback.

Whole files whatever their size, framing or pacing (the first version kept only what the first
read had buffered, so every file from 64 KiB up was refused as "over 64 MiB"); an origin that
closes before the declared length is a failed attempt, never a short file in the ZIP; the size
cap still holds; and credentials in ARTWORK_BASE_URL go out as basic auth, never into a log
line or a skip reason.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpServer

from pmd_service.core import logs
from pmd_service.core.settings import Settings
from pmd_service.host.vault import relative_artwork_path
from pmd_service.zipbuild import sources
from pmd_service.zipbuild.build import Entry
from pmd_service.zipbuild.content import Artwork
from pmd_service.zipbuild.sources import fetched_in_order, http_fetcher
from support.seeding import Factory, PostRow, UserRow, png_artwork
from support.stack import free_port
from tests.helpers import download_zip, fetch_item, request_bdr, run_worker

Client = TestClient[Any, Any]

SIZES = [0, 1, 65_535, 65_536, 1_000_000, 20_000_000]
PASSWORD = "s3cr@t-pässword"  # an @ and a non-ASCII letter: both must survive the URL


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Origin:
    """What ARTWORK_BASE_URL points at, serving `files` by path, with dials for each fault."""

    files: dict[str, bytes] = field(default_factory=dict)
    chunked: set[str] = field(default_factory=set)  # these paths: chunked, else Content-Length
    piece: int = 64 * 1024  # a streamed body is written in pieces this big
    trickle: float = 0.0  # pause after each piece (either framing)
    cut: dict[str, int] = field(default_factory=dict)  # path: responses to cut short
    failing: set[str] = field(default_factory=set)  # these paths answer 503
    endless: set[str] = field(default_factory=set)  # chunked bodies that never end
    credentials: tuple[str, str] | None = None  # basic auth required when set
    requests: dict[str, int] = field(default_factory=dict)
    authorizations: list[str | None] = field(default_factory=list)
    sent: int = 0  # bytes of body written (for the endless body)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.requests[path] = self.requests.get(path, 0) + 1
        self.authorizations.append(request.headers.get("Authorization"))
        if self.credentials is not None:
            expected = basic(*self.credentials)
            if request.headers.get("Authorization") != expected:
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="v"'})
        if path in self.failing:
            return web.Response(status=503)
        if path in self.endless:
            return await self._endless(request)
        data = self.files.get(path)
        if data is None:
            return web.Response(status=404)
        if self.cut.get(path, 0) > 0:
            self.cut[path] -= 1
            return await self._cut_short(request, data)
        if path not in self.chunked and not self.trickle:
            return web.Response(body=data, content_type="image/png")
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        if path in self.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(data)
        await resp.prepare(request)
        for start in range(0, len(data), self.piece):
            await resp.write(data[start : start + self.piece])
            if self.trickle:
                await asyncio.sleep(self.trickle)
        await resp.write_eof()
        return resp

    async def _cut_short(self, request: web.Request, data: bytes) -> web.StreamResponse:
        """Declares the whole length, sends half, closes: a dying origin or a dropped link."""
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = len(data)
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        assert request.transport is not None
        request.transport.close()  # flushes what was written, then closes
        return resp

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        piece = os.urandom(self.piece)
        try:
            while self.sent < 1 << 30:  # a bound, so a client that never stops fails the test
                await resp.write(piece)
                self.sent += len(piece)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what the test wants
        return resp

    def put(self, path: str, data: bytes, *, chunked: bool = False) -> None:
        self.files[path] = data
        if chunked:
            self.chunked.add(path)


async def start_origin(aiohttp_server: AiohttpServer, **dials: Any) -> Origin:
    origin = Origin(**dials)
    app = web.Application()
    app.router.add_get("/vault/{path:.+}", origin.handle)
    server = await aiohttp_server(app)
    origin.url = str(server.make_url("/vault"))
    return origin


def artwork(post_id: int) -> Artwork:
    return png_artwork(post_id, "ab/cd", uuid.uuid4(), "t")


def path_of(a: Artwork) -> str:
    return relative_artwork_path(a.storage_shard, a.storage_key, a.fmt)


async def fetch_all(base_url: str, artworks: list[Artwork], concurrency: int = 4) -> list[Entry]:
    """Through the worker's own fetch code and a session made as the worker makes it."""
    async with aiohttp.ClientSession(raise_for_status=False) as session:
        return [
            e
            async for e in fetched_in_order(http_fetcher(session, base_url), artworks, concurrency)
        ]


# --- the fetch code on its own -----------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_every_size_arrives_whole(aiohttp_server: AiohttpServer, chunked: bool) -> None:
    origin = await start_origin(aiohttp_server)
    artworks = [artwork(i) for i in range(len(SIZES))]
    for a, size in zip(artworks, SIZES, strict=True):
        origin.put(path_of(a), os.urandom(size), chunked=chunked)
    entries = await fetch_all(origin.url, artworks)
    for a, size, entry in zip(artworks, SIZES, entries, strict=True):
        assert entry.skip_reason is None, (size, entry.skip_reason)
        assert entry.data == origin.files[path_of(a)], size
    assert all(n == 1 for n in origin.requests.values())  # each arrived on the first try


async def test_a_slow_origin_trickling_chunks(aiohttp_server: AiohttpServer) -> None:
    # Each read finds only the piece that has arrived: the fetch must keep reading to the end.
    origin = await start_origin(aiohttp_server, piece=4096, trickle=0.02)
    a = artwork(1)
    origin.put(path_of(a), os.urandom(40 * 4096 + 17), chunked=True)
    (entry,) = await fetch_all(origin.url, [a])
    assert entry.skip_reason is None
    assert entry.data == origin.files[path_of(a)]


async def test_a_body_cut_short_is_retried_not_kept(aiohttp_server: AiohttpServer) -> None:
    origin = await start_origin(aiohttp_server)
    a = artwork(1)
    origin.put(path_of(a), os.urandom(1_000_000))
    origin.cut[path_of(a)] = 1  # the first answer stops half-way, the second is whole
    (entry,) = await fetch_all(origin.url, [a])
    assert entry.skip_reason is None
    assert entry.data == origin.files[path_of(a)]
    assert origin.requests[path_of(a)] == 2


async def test_a_body_always_cut_short_is_a_failed_fetch(
    aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    origin = await start_origin(aiohttp_server)
    a = artwork(1)
    origin.put(path_of(a), os.urandom(200_000))
    origin.cut[path_of(a)] = 10**6
    (entry,) = await fetch_all(origin.url, [a])
    assert entry.data is None and entry.skip_reason == "fetch_failed"
    # A transient failure: every attempt was made, each logged as such.
    assert origin.requests[path_of(a)] == sources.FETCH_ATTEMPTS
    assert caplog.text.count("(attempt ") == sources.FETCH_ATTEMPTS


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_the_cap_holds_and_a_file_at_it_arrives_whole(
    aiohttp_server: AiohttpServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    chunked: bool,
) -> None:
    monkeypatch.setattr(sources, "MAX_ARTWORK_BYTES", 100_000)  # 64 MiB in production
    # Trickled, so the file at the cap arrives over several reads, as a big one does.
    origin = await start_origin(aiohttp_server, piece=10_000, trickle=0.005)
    at_cap, over, endless = artwork(1), artwork(2), artwork(3)
    origin.put(path_of(at_cap), os.urandom(100_000), chunked=chunked)
    origin.put(path_of(over), os.urandom(100_001), chunked=chunked)
    # Chunked without end: no Content-Length to check up front, so reading must stop once the
    # cap is passed, not at EOF.
    origin.endless.add(path_of(endless))
    entries = await fetch_all(origin.url, [at_cap, over, endless])
    assert entries[0].skip_reason is None and entries[0].data == origin.files[path_of(at_cap)]
    assert [e.skip_reason for e in entries[1:]] == ["fetch_failed", "fetch_failed"]
    assert [e.data for e in entries[1:]] == [None, None]
    for a in (over, endless):
        assert f"{path_of(a)}: " in caplog.text and "over 100000 bytes" in caplog.text
        assert origin.requests[path_of(a)] == 1  # too big stays too big: not retried
    # What the origin got out before the worker hung up: the cap plus socket buffers, no more.
    assert origin.sent < 32 << 20


async def test_credentials_go_as_basic_auth_and_never_into_logs(
    aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    origin = await start_origin(aiohttp_server, credentials=("vault-reader", PASSWORD))
    good, failing = artwork(1), artwork(2)
    origin.put(path_of(good), os.urandom(70_000))
    origin.failing.add(path_of(failing))
    # As an operator writes it: the password percent-encoded in the URL.
    base = origin.url.replace("://", "://vault-reader:s3cr%40t-p%C3%A4ssword@")
    # And an origin that is down: the connection error names the host, never the password.
    down = f"http://vault-reader:s3cr%40t-p%C3%A4ssword@127.0.0.1:{free_port()}/vault"
    entries = await fetch_all(base, [good, failing]) + await fetch_all(down, [good])
    assert entries[0].data == origin.files[path_of(good)]
    assert [e.skip_reason for e in entries] == [None, "fetch_failed", "fetch_failed"]
    expected = basic("vault-reader", PASSWORD)
    assert origin.authorizations and set(origin.authorizations) == {expected}
    assert "503" in caplog.text and "Cannot connect" in caplog.text  # the failures are logged
    assert "/vault/" in caplog.text  # with the URL
    for secret in (PASSWORD, "s3cr%40t", "s3cr@t", "vault-reader:"):
        assert secret not in caplog.text


def test_the_log_handler_masks_user_info_in_any_url() -> None:
    # A second guard, for a URL some other code or library might log whole.
    out = io.StringIO()
    log = logging.getLogger("pmd_service.test_sources_http")
    log.propagate = False
    log.addHandler(logs.handler("text", out))
    try:
        log.warning("GET https://vault-reader:s3cr%%40t@vault.example/ab/cd.png failed")
        log.warning("see http://vault.example/x?contact=ops@example.org")  # not user info
    finally:
        log.handlers.clear()
        log.propagate = True
    text = out.getvalue()
    assert "s3cr" not in text and "vault-reader" not in text
    assert "https://[redacted]@vault.example/ab/cd.png" in text
    assert "http://vault.example/x?contact=ops@example.org" in text


# --- through the worker ------------------------------------------------------------------------


async def posts_on(
    factory: Factory, settings: Settings, owner: UserRow, origin: Origin, sizes: list[int]
) -> list[PostRow]:
    """Posts whose files are only on the origin (their vault copies removed), alternately
    served with Content-Length and chunked."""
    posts = []
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        post = await factory.post(owner, title=f"remote {i}", data=data or None)
        post = replace(post, data=data)
        for f in settings.vault_path.rglob(f"{post.storage_key}.*"):
            f.unlink()
        origin.put(
            relative_artwork_path(post.shard, post.storage_key, post.fmt), data, chunked=i % 2 == 1
        )
        posts.append(post)
    return posts


def path_of_post(post: PostRow) -> str:
    return relative_artwork_path(post.shard, post.storage_key, post.fmt)


async def test_worker_zips_http_artworks_byte_for_byte(
    client: Client, factory: Factory, settings: Settings, aiohttp_server: AiohttpServer
) -> None:
    # Two 1,000,000-byte artworks is what failed after four attempts in production.
    origin = await start_origin(aiohttp_server)
    owner = await factory.user()
    posts = await posts_on(
        factory, settings, owner, origin, [1_000_000, 1_000_000, 0, 1, 65_535, 65_536, 20_000_000]
    )
    item = await request_bdr(client, owner, [p.id for p in posts])
    await run_worker(
        msgspec.structs.replace(settings, artwork_base_url=origin.url, job_retry_base_seconds=0)
    )
    item = await fetch_item(client, owner, item["id"])
    assert item["status"] == "ready", item
    assert item["skipped"] == []
    archive = await download_zip(client, owner, item["id"])
    assert [n for n in archive.namelist() if n.startswith("artworks/")] == [
        f"artworks/{p.sqid}.png" for p in posts
    ]
    for p in posts:
        assert archive.read(f"artworks/{p.sqid}.png") == p.data
    assert all(n == 1 for n in origin.requests.values())  # first run, first try


async def test_worker_never_ships_a_file_cut_short(
    client: Client, factory: Factory, settings: Settings, aiohttp_server: AiohttpServer
) -> None:
    origin = await start_origin(aiohttp_server)
    owner = await factory.user()
    whole, cut = await posts_on(factory, settings, owner, origin, [1_000_000, 300_000])
    origin.cut[path_of_post(cut)] = 10**6  # every answer for it stops half-way
    item = await request_bdr(client, owner, [whole.id, cut.id])
    await run_worker(
        msgspec.structs.replace(settings, artwork_base_url=origin.url, job_retry_base_seconds=0)
    )
    item = await fetch_item(client, owner, item["id"])
    # Retried as a transient failure on every run; only the last run ships without it.
    assert origin.requests[path_of_post(cut)] == 4 * sources.FETCH_ATTEMPTS
    assert item["status"] == "ready", item
    assert item["skipped"] == [
        {"post_id": cut.id, "public_sqid": cut.sqid, "reason": "fetch_failed"}
    ]
    archive = await download_zip(client, owner, item["id"])
    assert [n for n in archive.namelist() if n.startswith("artworks/")] == [
        f"artworks/{whole.sqid}.png"
    ]
    assert archive.read(f"artworks/{whole.sqid}.png") == whole.data
    meta = json.loads(archive.read("metadata.json"))
    assert [s["reason"] for s in meta["skipped"]] == ["fetch_failed"]


async def test_worker_sends_credentials_and_keeps_them_out_of_logs_and_skips(
    client: Client,
    factory: Factory,
    settings: Settings,
    aiohttp_server: AiohttpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    origin = await start_origin(aiohttp_server, credentials=("vault-reader", PASSWORD))
    owner = await factory.user()
    good, failing = await posts_on(factory, settings, owner, origin, [80_000, 5_000])
    origin.failing.add(path_of_post(failing))
    item = await request_bdr(client, owner, [good.id, failing.id])
    base = origin.url.replace("://", "://vault-reader:s3cr%40t-p%C3%A4ssword@")
    await run_worker(
        msgspec.structs.replace(settings, artwork_base_url=base, job_retry_base_seconds=0)
    )
    item = await fetch_item(client, owner, item["id"])
    assert item["status"] == "ready", item
    expected = basic("vault-reader", PASSWORD)
    assert set(origin.authorizations) == {expected}
    archive = await download_zip(client, owner, item["id"])
    assert archive.read(f"artworks/{good.sqid}.png") == good.data
    row = await factory.pool.fetchrow(
        "SELECT skipped::text, coalesce(error_message, '') AS error FROM batch_download_requests"
        " WHERE id = $1::uuid",
        item["id"],
    )
    assert row is not None
    assert "fetch_failed" in row["skipped"]
    assert "HTTP 503" in caplog.text and path_of_post(failing) in caplog.text
    exposed = "\n".join(
        [
            caplog.text,
            json.dumps(item),
            row["skipped"],
            row["error"],
            archive.read("metadata.json").decode(),
        ]
    )
    for secret in (PASSWORD, "s3cr%40t", "s3cr@t", "vault-reader:"):
        assert secret not in exposed
