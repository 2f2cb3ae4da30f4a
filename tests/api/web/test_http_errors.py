from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.api import zip_download as object_download
from pmd_service.api.keys import ROUTE_ENDPOINTS
from pmd_service.core.logs import MalformedRequestFilter, quiet_malformed_requests
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support.seeding import Factory
from support.stack import free_port
from tests.helpers import assert_problem, fetch_item, requested, run_worker

Client = TestClient[Any, Any]


async def test_unknown_route_is_problem_404(client: Client) -> None:
    body = await assert_problem(await client.get("/nope"), 404)
    assert "/nope" in body["detail"]
    await assert_problem(await client.get("/api/pmd/nope"), 404)


async def test_wrong_method_is_405_with_allow(client: Client, factory: Factory) -> None:
    user = await factory.user()
    resp = await client.delete("/api/pmd/posts", headers=user.auth)
    await assert_problem(resp, 405)
    assert "GET" in resp.headers["Allow"]


async def test_oversized_body_is_413(client: Client, factory: Factory) -> None:
    user = await factory.user()
    resp = await client.post(
        "/api/pmd/action",
        # A file-like body (Content-Length from its size): aiohttp warns about large raw bytes.
        data=io.BytesIO(b'{"action": "hide", "post_ids": [' + b"1," * 5_000_000 + b"1]}"),
        headers={**user.auth, "Content-Type": "application/json"},
    )
    await assert_problem(resp, 413)


async def test_non_json_is_415(client: Client, factory: Factory) -> None:
    user = await factory.user()
    resp = await client.post("/api/pmd/action", data="action=hide", headers=user.auth)
    body = await assert_problem(resp, 415)
    assert "application/json" in body["detail"]


async def test_malformed_json_is_400(client: Client, factory: Factory) -> None:
    user = await factory.user()
    for raw in (b"{", b"", b"\xff\xfe{}", b'{"action": "hide", "post_ids": [1,]}'):
        resp = await client.post(
            "/api/pmd/action",
            data=raw,
            headers={**user.auth, "Content-Type": "application/json"},
        )
        await assert_problem(resp, 400)


async def test_schema_violations_are_422_naming_the_field(client: Client, factory: Factory) -> None:
    user = await factory.user()
    cases: list[tuple[Any, str]] = [
        ({"action": "hide"}, "post_ids"),
        ({"action": "explode", "post_ids": [1]}, "action"),
        ({"action": "hide", "post_ids": ["1"]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [-1]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [2**40]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": []}, "post_ids"),
        ({"action": "hide", "post_ids": list(range(1, 130))}, "post_ids"),
        ({"action": "hide", "post_ids": [1, 1]}, "post_ids"),
        ({"action": "hide", "post_ids": [1], "extra": True}, "extra"),
        ([1, 2, 3], "body"),
        ({"action": "hide", "post_ids": [[[[[[1]]]]]]}, "post_ids[0]"),
    ]
    for payload, field in cases:
        resp = await client.post("/api/pmd/action", json=payload, headers=user.auth)
        body = await assert_problem(resp, 422)
        assert body["errors"][0]["field"] == field, (payload, body)
    resp = await client.post(
        "/api/pmd/action",
        json={"action": "hide", "post_ids": list(range(1, 130))},
        headers=user.auth,
    )
    assert "128" in (await resp.json())["detail"]


async def test_unauthenticated_before_body_parsing(client: Client) -> None:
    resp = await client.post("/api/pmd/action", data=b"{")
    await assert_problem(resp, 401)


async def test_openapi_document_lists_every_route(client: Client) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    app = client.app
    assert app is not None
    # The document describes every declared endpoint; the dashboard page's routes (HTML and
    # files) are the only others.
    declared = app[ROUTE_ENDPOINTS]
    routed = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD" and r in declared
    }
    assert routed == documented
    pages = {r.resource.canonical for r in app.router.routes() if r.resource and r not in declared}
    assert pages == {"/u/{user_sqid}/posts", "/static/pmd", "/api/pmd/docs/vendor"}


async def test_raw_bytes_that_are_not_utf8_never_give_5xx(client: Client, factory: Factory) -> None:
    user = await factory.user()
    host, port = client.host, client.port
    token = user.token.encode()

    async def raw(request: bytes) -> int:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        return int(status_line.split()[1])

    # A Bearer token with bytes that are not UTF-8.
    assert (
        await raw(
            b"GET /api/pmd/posts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
            b"Connection: close\r\n\r\n"
        )
        == 401
    )
    # A JSON string with invalid UTF-8 inside.
    body = b'{"post_ids": [1], "target_sqid": "\xff"}'
    request = (
        b"POST /api/pmd/bdr HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + token
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    assert await raw(request) == 400


async def test_malformed_requests_log_one_warning_line_not_a_traceback_each(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    async def raw(request: bytes) -> int:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        return int(status_line.split()[1])

    malformed = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    ]
    # A fresh filter: an earlier test in this process may have opened the current interval.
    logger = logging.getLogger("aiohttp.server")
    for old in [f for f in logger.filters if isinstance(f, MalformedRequestFilter)]:
        logger.removeFilter(old)
    quiet_malformed_requests()
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        for request in malformed * 50:
            assert await raw(request) == 400
    lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    # 100 malformed requests within the rate limit's interval: one line, a warning, no traceback.
    assert len(lines) == 1
    (line,) = lines
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert line.getMessage().startswith("malformed HTTP request from 127.0.0.1: ")
    assert "Content-Length" in line.getMessage()
    # Nothing else was logged at ERROR.
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


# --- the document's headers, against what the server reads and sends --------------------------

DOWNLOAD = "/api/pmd/bdr/{id}/download"


def _header_params(doc: dict[str, Any], path: str) -> set[str]:
    params = doc["paths"][path]["get"].get("parameters", [])
    return {p["name"].lower() for p in params if p["in"] == "header"}


def _documented_response_headers(
    doc: dict[str, Any], method: str, path: str, status: int
) -> set[str]:
    response = doc["paths"][path][method.lower()]["responses"][str(status)]
    return {name.lower() for name in response.get("headers", {})}


async def test_the_document_names_every_condition_the_download_reads(
    client: Client, factory: Factory, settings: Settings
) -> None:
    """Each request header object_download reads changes the real server's answer, and the
    document lists it as a parameter of the download."""
    owner, _, [item] = await requested(client, factory)
    await run_worker(settings)
    url = (await fetch_item(client, owner, item["id"]))["download_url"]
    plain = await client.get(url, headers=owner.auth)
    assert plain.status == 200
    etag, modified = plain.headers["ETag"], plain.headers["Last-Modified"]
    # A request with the header that must be answered otherwise than one without it.
    probes: dict[str, tuple[dict[str, str], dict[str, str]]] = {
        "Range": ({}, {"Range": "bytes=0-0"}),
        "If-Range": ({"Range": "bytes=0-0"}, {"Range": "bytes=0-0", "If-Range": '"other"'}),
        "If-Match": ({}, {"If-Match": '"other"'}),
        "If-None-Match": ({}, {"If-None-Match": etag}),
        "If-Modified-Since": ({}, {"If-Modified-Since": modified}),
        "If-Unmodified-Since": ({}, {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}),
    }
    read = {name.lower() for name in object_download._CONDITIONS}
    assert read == {name.lower() for name in probes}, "a condition without a probe here"
    documented = _header_params(await (await client.get("/openapi.json")).json(), DOWNLOAD)
    for name, (without, with_it) in probes.items():
        a = await client.get(url, headers=owner.auth | without)
        b = await client.get(url, headers=owner.auth | with_it)
        assert a.status != b.status, f"{name}: the server does not read it"
        assert name.lower() in documented, f"{name}: read by the server, not in the document"


async def test_the_document_names_every_header_the_server_sends(
    aiohttp_client: AiohttpClient, factory: Factory, settings: Settings, redis_clean: None
) -> None:
    """Real answers (a download, a daily limit's 429, a 503 of a Redis that refuses): every
    header beyond those of any answer (/healthz's) is in the document for that status."""
    limited = replace(settings, bdr_daily_limit=1)
    client: Client = await aiohttp_client(create_app(limited))
    owner, post, [item] = await requested(client, factory)
    await run_worker(limited)
    url = (await fetch_item(client, owner, item["id"]))["download_url"]
    answers = [
        ("GET", DOWNLOAD, await client.get(url, headers=owner.auth)),
        (
            "POST",
            "/api/pmd/bdr",
            await client.post("/api/pmd/bdr", headers=owner.auth, json={"post_ids": [post.id]}),
        ),
    ]
    down = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    gone: Client = await aiohttp_client(create_app(down))
    answers += [
        ("GET", "/readyz", await gone.get("/readyz")),
        (
            "POST",
            "/api/pmd/bdr/sse-ticket",
            await gone.post("/api/pmd/bdr/sse-ticket", headers=owner.auth),
        ),
    ]
    assert [a.status for _, _, a in answers] == [200, 429, 503, 503]
    everywhere = {name.lower() for name in (await client.get("/healthz")).headers}
    doc = await (await client.get("/openapi.json")).json()
    for method, path, answer in answers:
        sent = {name.lower() for name in answer.headers} - everywhere - {"content-type"}
        missing = sent - _documented_response_headers(doc, method, path, answer.status)
        assert not missing, f"{method} {path} {answer.status} sends {missing}, undocumented"
