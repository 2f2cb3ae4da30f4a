from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pmd_service.core.logs import MalformedRequestFilter, quiet_malformed_requests
from pmd_service.web.keys import ROUTE_ENDPOINTS
from tests.factories import Factory
from tests.helpers import assert_problem

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
    assert pages == {"/u/{user_sqid}/posts", "/static/pmd"}


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
    assert await raw(b"GET /api/pmd/posts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
                     b"Connection: close\r\n\r\n") == 401  # fmt: skip
    # A JSON string with invalid UTF-8 inside.
    body = b'{"post_ids": [1], "target_sqid": "\xff"}'
    request = (b"POST /api/pmd/bdr HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
               b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
               b"\r\nConnection: close\r\n\r\n" + body)  # fmt: skip
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
