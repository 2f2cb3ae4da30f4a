"""The shipped proxy files in front of the real service (`python server.py` and `arq
worker.WorkerSettings` as separate processes): Debian's Caddy with deploy/caddy/pmd.Caddyfile
and Debian's nginx with deploy/nginx/pmd.conf. Through each: /api/pmd/* reaches the service
ahead of the host's /api/* rule, an SSE event emitted after the stream opened arrives while the
stream is still open, a download resumes with Range, and the object store's signed-URL 302
passes through unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from support import tools
from support.seaweed import Seaweed
from support.seeding import Factory, UserRow
from support.sse import SSE, open_stream
from support.stack import free_port
from tests.deploy.conftest import StackOn
from tests.helpers import eventually
from tests.host_stack.proxies import (
    HOST_API_REPLY,
    check_reference,
    nginx_test,
    running_caddy,
    running_nginx,
)
from tests.prerequisites import needs


@pytest.fixture(
    params=[
        pytest.param(kind, marks=needs("deploy", tools.missing([kind])))
        for kind in ("caddy", "nginx")
    ]
)
def proxy(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def in_front(kind: str, directory: Path, upstream: str) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    if kind == "caddy":
        return running_caddy(directory, port, upstream)
    return running_nginx(directory, port, upstream)


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield


async def request_bdr(http: aiohttp.ClientSession, base: str, user: UserRow, ids: list[int]) -> Any:
    async with http.post(base + "/api/pmd/bdr", json={"post_ids": ids}, headers=user.auth) as resp:
        assert resp.status == 202, await resp.text()
        return await resp.json()


async def until_ready(http: aiohttp.ClientSession, base: str, user: UserRow, bdr_id: str) -> Any:
    item: dict[str, Any] = {}

    async def ready() -> bool:
        async with http.get(f"{base}/api/pmd/bdr/{bdr_id}", headers=user.auth) as resp:
            assert resp.status == 200, await resp.text()
            item.update(await resp.json())
        assert item["status"] in {"pending", "processing", "ready"}, item
        return bool(item["status"] == "ready")

    await eventually(ready, 60, f"BDR {bdr_id} ready", interval=0.1)
    return item


async def check_routing(http: aiohttp.ClientSession, base: str, kind: str) -> None:
    # /api/pmd/* is the service's (its problem+json 401), whole path kept ...
    async with http.get(base + "/api/pmd/posts") as resp:
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        if kind == "nginx":  # nginx's request id reaches the service, which answers it
            assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])
    # ... and the rest of /api/* stays the host's.
    async with http.get(base + "/api/posts") as resp:
        text = await resp.text()
        assert text.startswith(HOST_API_REPLY), text
        if kind == "caddy":  # the host's labels strip /api for its api (handle_path)
            assert text == HOST_API_REPLY + "/posts"


async def test_live_events_and_a_resumed_download_through_the_proxy(
    proxy: str, stack_on: StackOn, factory: Factory, tmp_path: Path
) -> None:
    owner = await factory.user()
    posts = [await factory.post(owner) for _ in range(3)]
    async with stack_on() as stack:
        with in_front(proxy, tmp_path / proxy, f"127.0.0.1:{stack.port}") as base:
            async with aiohttp.ClientSession() as http:
                await check_routing(http, base, proxy)
                await check_reference(http, base)
                async with open_stream(http, base + SSE, headers=owner.auth) as stream:
                    opening = await stream.opening()
                    assert opening[-1].event == "connected"
                    # Requested only now: every event of it is emitted after the stream opened.
                    item = await request_bdr(http, base, owner, [p.id for p in posts])

                    def ready(m: Any) -> bool:
                        if m.event != "bdr_update":
                            return False
                        data = m.json()
                        return bool(data["id"] == item["id"] and data["status"] == "ready")

                    live = await stream.until(ready, within=60)
                    # Received through the proxy while the stream is still open.
                    assert not stream.resp.content.at_eof()
                    assert not stream.resp.closed
                assert [m.json()["id"] for m in live if m.event == "bdr_update"][-1] == item["id"]

                url = base + live[-1].json()["download_url"]
                async with http.get(url, headers=owner.auth) as whole:
                    assert whole.status == 200
                    body = await whole.read()
                    etag = whole.headers["ETag"]
                    assert whole.headers["Accept-Ranges"] == "bytes"
                assert zipfile.ZipFile(io.BytesIO(body)).testzip() is None
                ranged = {**owner.auth, "Range": "bytes=10-109"}
                async with http.get(url, headers=ranged) as part:
                    assert part.status == 206
                    assert await part.read() == body[10:110]
                    assert part.headers["Content-Range"] == f"bytes 10-109/{len(body)}"
                resume = {**owner.auth, "Range": "bytes=100-", "If-Range": etag}
                async with http.get(url, headers=resume) as rest:
                    assert rest.status == 206
                    assert await rest.read() == body[100:]


async def test_the_signed_url_redirect_passes_through_unchanged(
    proxy: str,
    stack_on: StackOn,
    pool: asyncpg.Pool,
    factory: Factory,
    tmp_path: Path,
    seaweed: Seaweed,
    s3_bucket: str,
    s3_prefix: str,
) -> None:
    owner = await factory.user()
    posts = [await factory.post(owner) for _ in range(2)]
    env = seaweed.env(s3_bucket, s3_prefix, ZIP_DOWNLOAD_MODE="redirect")
    async with stack_on(**env) as stack:
        with in_front(proxy, tmp_path / proxy, f"127.0.0.1:{stack.port}") as base:
            async with aiohttp.ClientSession() as http:
                item = await request_bdr(http, base, owner, [p.id for p in posts])
                item = await until_ready(http, base, owner, item["id"])
                url = base + item["download_url"]
                async with http.get(url, headers=owner.auth, allow_redirects=False) as resp:
                    assert resp.status == 302, await resp.text()
                    signed = resp.headers["Location"]
                    assert resp.headers["Cache-Control"] == "private, no-store"
                # The store's own URL, signature intact: the proxy rewrote nothing.
                assert signed.startswith(seaweed.endpoint + "/")
                assert "X-Amz-Signature=" in signed
                async with http.get(signed) as got:
                    assert got.status == 200
                    body = await got.read()
    sha = await pool.fetchval(
        "SELECT file_sha256 FROM batch_download_requests WHERE id = $1::uuid", item["id"]
    )
    assert hashlib.sha256(body).hexdigest() == sha


@needs("deploy", tools.missing(["nginx"]))
def test_nginx_accepts_the_shipped_file(tmp_path: Path) -> None:
    result = nginx_test(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
