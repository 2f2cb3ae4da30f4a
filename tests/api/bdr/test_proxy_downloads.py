"""Sending a ZIP's bytes: proxied from a real S3 store (SeaweedFS) or from the local folder,
through a real aiohttp server on loopback, with raw sockets for clients that stop reading or
leave mid-body.

Both modes answer conditions and ranges alike; a client that leaves is one info line and a
499, never a 5xx; a proxied download holds one chunk, is cut off when its client takes nothing
for ZIP_PROXY_IDLE_SECONDS (a local file's too), and is capped per user (429) and per
process (503).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import types
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.api.keys import ZIP_FILES
from pmd_service.api.zip_download import READ_CHUNK, _pieces, _relay
from pmd_service.core.settings import Settings
from support.seaweed import Seaweed
from support.seeding import Factory
from tests.downloads import BIG, HANG_GUARD, open_raw, ready_zip, start
from tests.helpers import Client, assert_problem, eventually, request_bdr


@pytest.fixture(params=["folder", "proxy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def served(
    request: pytest.FixtureRequest, mode: str, settings: Settings, s3_prefix: str
) -> Settings:
    """The settings of one way of sending bytes: the local folder, or a bucket in proxy mode."""
    if mode == "folder":
        return settings
    seaweed: Seaweed = request.getfixturevalue("seaweed")
    return seaweed.settings(
        settings,
        request.getfixturevalue("s3_bucket"),
        f"{s3_prefix}/zips",
        zip_download_mode="proxy",
    )


def _http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


async def test_both_modes_answer_conditions_and_ranges_alike(
    aiohttp_client: AiohttpClient, factory: Factory, served: Settings, redis_clean: None
) -> None:
    """RFC 9110: an invalid range is ignored (200, whole ZIP), `If-None-Match: *` is 304,
    If-Match and If-Unmodified-Since are 412 when they do not hold, If-Range is exact."""
    client = await start(aiohttp_client, served)
    owner, url, full = await ready_zip(client, factory, served)
    head = await client.head(url, headers=owner.auth)
    etag, modified = head.headers["ETag"], head.headers["Last-Modified"]
    size = len(full)
    last = datetime.strptime(modified, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    earlier, later = _http_date(last - timedelta(hours=1)), _http_date(last + timedelta(hours=1))
    cases: list[tuple[dict[str, str], int, bytes]] = [
        ({"Range": "bytes=10-5"}, 200, full),  # invalid: ignored, not 416
        ({"Range": "bytes=abc"}, 200, full),
        ({"Range": "bytes=5-"}, 206, full[5:]),
        ({"Range": f"bytes=0-{size + 100}"}, 206, full),
        ({"Range": "bytes=0-1,5-6"}, 200, full),
        ({"If-None-Match": "*"}, 304, b""),
        ({"If-None-Match": f'"nope", W/{etag}'}, 304, b""),  # weak comparison
        ({"If-None-Match": '"nope"'}, 200, full),
        ({"If-Match": "*"}, 200, full),
        ({"If-Match": etag, "Range": "bytes=0-9"}, 206, full[:10]),
        ({"If-Modified-Since": modified}, 304, b""),
        ({"If-Modified-Since": earlier}, 200, full),
        ({"If-Unmodified-Since": later}, 200, full),
        ({"Range": "bytes=0-9", "If-Range": modified}, 206, full[:10]),
        ({"Range": "bytes=0-9", "If-Range": earlier}, 200, full),
        ({"Range": "bytes=0-9", "If-Range": f"W/{etag}"}, 200, full),
    ]
    for headers, status, body in cases:
        resp = await client.get(url, headers={**owner.auth, **headers})
        assert (resp.status, await resp.read()) == (status, body), headers
        if status == 304:
            assert resp.headers["ETag"] == etag
            again = await client.head(url, headers={**owner.auth, **headers})
            assert again.status == 304, headers
        if status == 206:
            stop = 5 + len(body) - 1 if headers["Range"] == "bytes=5-" else len(body) - 1
            first = 5 if headers["Range"] == "bytes=5-" else 0
            assert resp.headers["Content-Range"] == f"bytes {first}-{stop}/{size}"
    for headers in ({"If-Match": '"nope"'}, {"If-Unmodified-Since": earlier}):
        problem = await assert_problem(
            await client.get(url, headers={**owner.auth, **headers}), 412
        )
        assert etag in problem["detail"]
    for unsatisfiable in ("bytes=-0", f"bytes={size}-"):
        resp = await client.get(url, headers={**owner.auth, "Range": unsatisfiable})
        await assert_problem(resp, 416)
        assert resp.headers["Content-Range"] == f"bytes */{size}"


# Past Python's int() limit (4,300 digits), which made every one of these a 500.
HUGE = "9" * 4301


async def test_both_modes_read_range_numbers_of_any_length_and_only_ascii_digits(
    aiohttp_client: AiohttpClient, factory: Factory, served: Settings, redis_clean: None
) -> None:
    """RFC 9110 §14.1.1: a first-byte-pos past the end is 416 however long, a last-byte-pos
    past it is the end, a range that does not parse (its DIGIT is ASCII only) the whole ZIP."""
    client = await start(aiohttp_client, served)
    owner, url, full = await ready_zip(client, factory, served)
    size = len(full)
    cases: list[tuple[str, int, bytes]] = [
        (f"bytes={HUGE}-", 416, b""),
        (f"bytes={'9' * 3000}-{HUGE}", 416, b""),
        (f"bytes=0-{HUGE}", 206, full),
        (f"bytes=5-{HUGE}", 206, full[5:]),
        (f"bytes=-{HUGE}", 206, full),
        (f"bytes={'0' * 5000}5-", 206, full[5:]),  # leading zeros: it is 5
        (f"bytes={HUGE}-5", 200, full),  # last before first: ignored
        (f"bytes={HUGE}-{'9' * 3000}", 200, full),
        ("bytes=\u0660-\u0664", 200, full),  # Arabic-Indic digits: not a range
        ("bytes=0-\u0664", 200, full),
        ("bytes=\uff11-\uff12", 200, full),  # fullwidth digits
    ]
    for spec, status, body in cases:
        headers = {**owner.auth, "Range": spec}
        resp = await client.get(url, headers=headers)
        got = await resp.read()
        assert resp.status == status, (spec[:40], resp.status, got[:300])
        if status == 416:
            assert resp.headers["Content-Range"] == f"bytes */{size}"
            assert len(got) < 1000  # the detail quotes the start of the header, not all of it
            continue
        assert got == body, spec[:40]
        if status == 206:
            first = size - len(body)
            assert resp.headers["Content-Range"] == f"bytes {first}-{size - 1}/{size}"
        head = await client.head(url, headers=headers)
        assert head.status == status, spec[:40]
        assert int(head.headers["Content-Length"]) == len(body)


async def test_file_answers_carry_the_request_id_in_both_modes(
    aiohttp_client: AiohttpClient, factory: Factory, served: Settings, redis_clean: None
) -> None:
    """A ZIP's 200 and 206 (sent as a file, or proxied) echo X-Request-ID like every answer."""
    client = await start(aiohttp_client, served)
    owner, url, _ = await ready_zip(client, factory, served)
    for method in ("GET", "HEAD"):
        for extra, status in (({}, 200), ({"Range": "bytes=1-4"}, 206)):
            rid = f"rid-{method.lower()}-{status}"
            headers = {**owner.auth, "X-Request-ID": rid, **extra}
            resp = await client.request(method, url, headers=headers)
            await resp.read()
            assert resp.status == status
            assert resp.headers.get("X-Request-ID") == rid, (method, status, dict(resp.headers))
            made = await client.request(method, url, headers={**owner.auth, **extra})
            await made.read()
            assert len(made.headers.get("X-Request-ID", "")) == 32  # one made for it


def _metric(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


async def dropped(client: Client, held: list[Any], what: str) -> None:
    """Each held connection aborted, then until the process counts no proxied download."""
    for _, writer, _ in held:
        writer.transport.abort()

    async def none_left() -> bool:
        text = await (await client.get("/metrics")).text()
        return _metric(text, "pmd_proxy_downloads ") == 0

    await eventually(none_left, HANG_GUARD, what)


DOWNLOADS = 'pmd_http_requests_total{method="GET",route="/api/pmd/bdr/{id}/download",status='


@pytest.mark.parametrize("cancels", [False, True], ids=["as-run_app", "cancelling"])
async def test_a_client_leaving_mid_body_is_one_info_line_and_a_499(
    aiohttp_client: AiohttpClient,
    factory: Factory,
    served: Settings,
    redis_clean: None,
    caplog: pytest.LogCaptureFixture,
    cancels: bool,
) -> None:
    """As `curl … | head -c 65536`: never an ERROR with a traceback, never counted as a 500,
    whether the server finds out when it writes or cancels the handler."""
    client = await start(aiohttp_client, served, cancels=cancels)
    owner, url, _ = await ready_zip(client, factory, served, size=BIG)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            reader, writer, head = await open_raw(client, url, owner)
            assert head.startswith("HTTP/1.1 200")
            await reader.readexactly(65536)
            writer.transport.abort()  # gone, with most of the ZIP unsent

        async def counted() -> bool:
            text = await (await client.get("/metrics")).text()
            return _metric(text, DOWNLOADS + '"499"}') == 3

        await eventually(counted, HANG_GUARD, "three downloads counted as 499")
    text = await (await client.get("/metrics")).text()
    assert _metric(text, DOWNLOADS + '"5') == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    gone = [r for r in caplog.records if "the client" in r.getMessage()]
    assert len(gone) == 3 and all(r.exc_info is None for r in gone), caplog.text


@pytest.fixture
def proxy_settings(
    settings: Settings, seaweed: Seaweed, s3_bucket: str, s3_prefix: str
) -> Settings:
    return seaweed.settings(settings, s3_bucket, f"{s3_prefix}/zips", zip_download_mode="proxy")


def _transports(client: Client) -> list[asyncio.Transport]:
    """The server's open connections' transports."""
    runner = client.server.runner
    assert runner is not None and runner.server is not None
    connections = runner.server.connections
    return [
        h.transport for h in connections if h.transport is not None and not h.transport.is_closing()
    ]


def _server_buffers(client: Client) -> list[int]:
    """Bytes each connection of the server holds unsent (asyncio's write buffer)."""
    return [t.get_write_buffer_size() for t in _transports(client)]


async def _stalled_download(
    aiohttp_client: AiohttpClient, factory: Factory, settings: Settings
) -> tuple[Client, asyncio.StreamReader, asyncio.StreamWriter]:
    """A server that cuts off a download idle for 2 s, and a raw client of a big ZIP that
    read the answer's head and then stops reading (a small receive buffer)."""
    settings = replace(settings, zip_proxy_idle_seconds=2.0)
    client = await start(aiohttp_client, settings)
    owner, url, _ = await ready_zip(client, factory, settings, size=BIG)
    reader, writer, head = await open_raw(client, url, owner, rcvbuf=4096)
    assert head.startswith("HTTP/1.1 200")
    return client, reader, writer


async def _cut_off_short(
    client: Client, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Wait for the server to count a stalled download as cut off (499), then read what is
    left of it: the connection ends with the ZIP far from sent."""

    async def cut_off() -> bool:
        text = await (await client.get("/metrics")).text()
        return _metric(text, DOWNLOADS + '"499"}') == 1

    await eventually(cut_off, HANG_GUARD, "the stalled download cut off")
    got = 0
    try:
        async with asyncio.timeout(HANG_GUARD):
            while chunk := await reader.read(2**20):
                got += len(chunk)
    except ConnectionError:
        pass
    finally:
        writer.transport.abort()
    assert got < BIG


async def test_a_stalled_reader_holds_one_chunk_and_is_cut_off(
    aiohttp_client: AiohttpClient,
    factory: Factory,
    proxy_settings: Settings,
    redis_clean: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The next chunk is read from the store only once the client took the last one: a
    reader that stops holds at most a chunk in the server; after ZIP_PROXY_IDLE_SECONDS
    without taking a byte it is cut off (one info line, 499) and its slot is free again."""
    with caplog.at_level(logging.INFO):
        client, reader, writer = await _stalled_download(aiohttp_client, factory, proxy_settings)
        held: list[int] = []

        async def stalled() -> bool:  # the kernel's buffers full, the server's one settled
            held.append(max(_server_buffers(client), default=0))
            return len(held) > 20 and held[-1] > 0 and held[-1] == held[-10]

        try:
            await eventually(stalled, HANG_GUARD, lambda: f"server buffers {held[-5:]}", 0.05)
            # A chunk is written once the buffer is empty, and never a second one unwaited.
            assert 0 < held[-1] <= READ_CHUNK, held[-1]
        except BaseException:
            writer.transport.abort()  # a failed check must not leave the socket to a later test
            raise

        # Nothing taken for 2 s: the server closes the connection, the ZIP far from sent.
        await _cut_off_short(client, reader, writer)
    text = await (await client.get("/metrics")).text()
    assert _metric(text, DOWNLOADS + '"499"}') == 1
    assert _metric(text, "pmd_proxy_downloads ") == 0
    cut = [r.getMessage() for r in caplog.records if "took no byte for 2 s" in r.getMessage()]
    assert len(cut) == 1, caplog.text


async def test_a_proxied_body_is_written_in_whole_chunks_whatever_the_store_sends() -> None:
    """The store's chunks are at least a chunk long, rarely a multiple of one: every write but
    the last is exactly READ_CHUNK, so none is small enough for aiohttp to pass without waiting."""
    chunks = [os.urandom(n) for n in (READ_CHUNK + 20029, 3 * READ_CHUNK - 5, READ_CHUNK, 7)]

    async def store() -> AsyncIterator[memoryview]:
        for chunk in chunks:
            yield memoryview(chunk)

    pieces = [bytes(p) async for p in _pieces(store(), READ_CHUNK)]
    sent = b"".join(chunks)
    assert b"".join(pieces) == sent
    assert [len(p) for p in pieces[:-1]] == [READ_CHUNK] * (len(sent) // READ_CHUNK)
    assert len(pieces[-1]) == len(sent) % READ_CHUNK


async def test_a_stalled_reader_of_a_local_file_is_cut_off(
    aiohttp_client: AiohttpClient,
    factory: Factory,
    settings: Settings,
    redis_clean: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ZIP sent from the local folder (sendfile) to a client that stops reading: after
    ZIP_PROXY_IDLE_SECONDS without taking a chunk it is cut off, as in proxy mode (one info
    line, 499). One sendfile of the whole file waited as long as the connection lived."""
    with caplog.at_level(logging.INFO):
        client, reader, writer = await _stalled_download(aiohttp_client, factory, settings)
        await _cut_off_short(client, reader, writer)
    cut = [r.getMessage() for r in caplog.records if "took no byte for 2 s" in r.getMessage()]
    assert len(cut) == 1, caplog.text


async def test_stalled_readers_that_leave_leave_no_memory_behind(
    aiohttp_client: AiohttpClient, factory: Factory, proxy_settings: Settings, redis_clean: None
) -> None:
    """A download whose client left while its write waited is freed when it ends, not at the
    next full garbage collection (which may not come for a long time: the server's memory
    grew with every wave of readers that left, docs/reliability.md). The collector is off
    meanwhile, so nothing can free a reference cycle by chance."""
    client = await start(aiohttp_client, proxy_settings)  # as run_app: the write finds out
    owner, url, _ = await ready_zip(client, factory, proxy_settings, size=BIG)
    gc.collect()
    gc.disable()
    try:
        held = [await open_raw(client, url, owner, rcvbuf=4096) for _ in range(3)]

        async def stalled() -> bool:  # each waits in a write, its chunk in the buffer
            buffers = _server_buffers(client)
            return len(buffers) == 3 and all(buffers)

        await eventually(stalled, HANG_GUARD, "three stalled downloads")
        await dropped(client, held, "the downloads ended")
        left = [
            o
            for o in gc.get_objects()
            if isinstance(o, types.FrameType) and o.f_code in (_relay.__code__, _pieces.__code__)
        ]
        assert not left, f"{len(left)} downloads still hold their chunk and store stream"
    finally:
        gc.enable()


async def test_proxied_downloads_are_capped_per_user_and_per_process(
    aiohttp_client: AiohttpClient, factory: Factory, proxy_settings: Settings, redis_clean: None
) -> None:
    settings = replace(proxy_settings, zip_proxy_max_per_user=2, zip_proxy_max_downloads=3)
    client = await start(aiohttp_client, settings)
    owner, url, _ = await ready_zip(client, factory, settings, size=BIG)
    other, other_url, _ = await ready_zip(client, factory, settings)
    held = [await open_raw(client, url, owner, rcvbuf=4096) for _ in range(2)]
    assert all(head.startswith("HTTP/1.1 200") for _, _, head in held)

    calls = client.app[ZIP_FILES].health.calls
    resp = await client.get(url, headers=owner.auth)
    problem = await assert_problem(resp, 429, "too_many_downloads")
    assert resp.headers["Retry-After"] == "30"
    assert "2 downloads of yours" in problem["detail"]
    # Refused before the store was asked anything (no HEAD for a download that cannot stream).
    assert client.app[ZIP_FILES].health.calls == calls
    # A HEAD streams nothing: never refused. A moderator's download counts as the moderator's.
    assert (await client.head(url, headers=owner.auth)).status == 200
    moderator = await factory.user(roles=["user", "moderator"])
    assert f"target_sqid={owner.sqid}" in url  # the owner's download, asked by the moderator
    held.append(await open_raw(client, url, moderator, rcvbuf=4096))
    assert held[-1][2].startswith("HTTP/1.1 200")
    calls = client.app[ZIP_FILES].health.calls
    resp = await client.get(other_url, headers=other.auth)
    problem = await assert_problem(resp, 503, "downloads_busy")
    assert client.app[ZIP_FILES].health.calls == calls
    assert resp.headers["Retry-After"] == "30"
    assert "as many downloads as it can (3)" in problem["detail"]
    text = await (await client.get("/metrics")).text()
    assert _metric(text, "pmd_proxy_downloads ") == 3
    assert _metric(text, 'pmd_proxy_downloads_refused_total{cap="user"}') == 1
    assert _metric(text, 'pmd_proxy_downloads_refused_total{cap="server"}') == 1

    await dropped(client, held, "the slots given back")
    resp = await client.get(url, headers=owner.auth)
    assert resp.status == 200 and len(await resp.read()) == BIG


@pytest.mark.parametrize("cancels", [False, True], ids=["as-run_app", "cancelling"])
async def test_a_client_leaving_an_sse_stream_is_no_error(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    factory: Factory,
    redis_clean: None,
    caplog: pytest.LogCaptureFixture,
    cancels: bool,
) -> None:
    client = await start(aiohttp_client, settings, cancels=cancels)
    owner = await factory.user()
    post = await factory.post(owner)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            reader, writer, head = await open_raw(client, "/api/pmd/bdr/sse", owner)
            assert head.startswith("HTTP/1.1 200")
            await reader.readuntil(b"event: connected")
            writer.transport.abort()
        await request_bdr(client, owner, [post.id])  # an event for the streams that left

        async def ended() -> bool:
            text = await (await client.get("/metrics")).text()
            return _metric(text, "pmd_sse_subscribers ") == 0

        await eventually(ended, HANG_GUARD, "the streams ended")
    text = await (await client.get("/metrics")).text()
    assert (
        _metric(text, 'pmd_http_requests_total{method="GET",route="/api/pmd/bdr/sse",status="5')
        == 0
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
