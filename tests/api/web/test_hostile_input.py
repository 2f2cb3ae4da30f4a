"""Hostile input over real TCP: oversized bodies, deep nesting, huge arrays, NUL bytes, invalid
UTF-8, CR/LF in headers, slowloris clients, 1,000 idle connections.

Each must give a clean 4xx (problem+json where a handler answers) or a closed connection: never
a 5xx, never a hang of other clients, and nothing left behind once the clients are gone. Raw
asyncio sockets send what aiohttp's client refuses to. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pmd_service.api.keys import OPENAPI_DOC
from support.seeding import Factory, UserRow
from tests.helpers import assert_problem, eventually

Client = TestClient[Any, Any]
POSTS = ("/api/pmd/action", "/api/pmd/license", "/api/pmd/bdr")
LIMIT = 256 * 1024  # Settings.max_body_bytes
# Seconds after which a wait that should end counts as hung: a guard, not a performance claim.
HUNG = 30.0


# --- raw HTTP ----------------------------------------------------------------------------------


async def raw(
    client: Client, request: bytes, *, within: float = 5.0, until: bytes | None = None
) -> bytes:
    """Send bytes, read until the server closes (or sends `until`) or `within` passes."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        out = b""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            except (TimeoutError, ConnectionError):
                break
            if not chunk:
                break
            out += chunk
            if until is not None and until in out:
                break
        return out
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def status_of(response: bytes) -> int | None:
    """The status of the first response, or None when the server just closed."""
    if not response.startswith(b"HTTP/1."):
        return None
    return int(response.split(b" ", 2)[1])


def http(
    method: str,
    path: bytes,
    user: UserRow | None = None,
    body: bytes | None = None,
    headers: bytes = b"",
) -> bytes:
    head = method.encode() + b" " + path + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    if user is not None:
        head += b"Authorization: Bearer " + user.token.encode() + b"\r\n"
    if body is not None:
        head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    return head + headers + b"\r\n" + (body or b"")


async def assert_clean_4xx(client: Client, request: bytes, *allowed: int) -> int | None:
    """A 4xx (one of `allowed` when given) or a closed connection; never a 5xx or a hang."""
    response = await raw(client, request)
    status = status_of(response)
    assert status is None or 400 <= status < 500, response[:500]
    if allowed:
        assert status in allowed, response[:500]
    return status


async def healthy(client: Client, user: UserRow) -> None:
    resp = await client.get("/api/pmd/posts", headers=user.auth)
    assert resp.status == 200


# --- bodies ------------------------------------------------------------------------------------


async def test_bodies_over_the_limit_are_413_everywhere(client: Client, factory: Factory) -> None:
    user = await factory.user()
    over = b'{"post_ids": [' + b"1," * (LIMIT // 2) + b"1]}"
    for path in POSTS:
        resp = await client.post(
            path, data=over, headers={**user.auth, "Content-Type": "application/json"}
        )
        await assert_problem(resp, 413)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield b" " * 8192

        # Chunked (no Content-Length): the limit holds while reading.
        resp = await client.post(
            path, data=chunks(), headers={**user.auth, "Content-Type": "application/json"}
        )
        await assert_problem(resp, 413)
        # A Content-Length far beyond the limit and no body: refused from the header alone.
        # The body never comes, so a server that waited for it would never answer; the bound
        # only turns such a hang into a failure, it is no claim about speed.
        head = http("POST", path.encode(), user, b"")
        head = head.replace(b"Content-Length: 0", b"Content-Length: 10000000000")
        assert status_of(await raw(client, head, within=HUNG, until=b"\r\n")) == 413
    await healthy(client, user)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"action": "hide", "post_ids": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"x": ' * 20_000 + b"1" + b"}" * 20_000,
        b'{"action": "hide", "license_id": 1, "post_ids": [' + b"1," * 100_000 + b"1]}",
        b'{"action": "hide", "post_ids": [' + b"7" * 200_000 + b"]}",
        b'{"action": "hide", "post_ids": [1e999999]}',
        b'{"action": "hide", "post_ids": [1], "target_sqid": "' + b"s" * 200_000 + b'"}',
        b'{"action": "hide", "action": "delete", "post_ids": [1], "license_id": null}',
        b'{"action": "hide", "post_ids": [1], "license_id": null, "target_sqid": "\\ud800"}',
    ],
    ids=[
        "nested arrays",
        "nested in a field",
        "nested objects",
        "100k ids",
        "200k-digit number",
        "huge exponent",
        "200k-char string",
        "duplicate keys",
        "lone surrogate",
    ],
)
async def test_deep_huge_and_odd_json_is_a_clean_4xx(
    client: Client, factory: Factory, body: bytes
) -> None:
    user = await factory.user()
    moderator = await factory.user(roles=["user", "moderator"])
    assert len(body) < LIMIT
    for caller in (user, moderator):
        for path in POSTS:
            resp = await client.post(
                path, data=body, headers={**caller.auth, "Content-Type": "application/json"}
            )
            assert 400 <= resp.status < 500, (path, resp.status, await resp.text())
            assert resp.content_type == "application/problem+json"
    await healthy(client, user)


# --- NUL bytes and invalid UTF-8 ---------------------------------------------------------------


async def test_nul_bytes_in_strings(client: Client, factory: Factory) -> None:
    user = await factory.user()
    moderator = await factory.user(roles=["user", "moderator"])
    post = await factory.post(user)
    for caller in (user, moderator):
        # Refused as text, the same for everyone, before anyone is looked up.
        resp = await client.post(
            "/api/pmd/action",
            json={"action": "hide", "post_ids": [post.id], "target_sqid": "a\x00b"},
            headers=caller.auth,
        )
        assert (await assert_problem(resp, 400))["errors"][0]["field"] == "target_sqid"
        resp = await client.get(
            "/api/pmd/posts", params={"target_sqid": "\x00"}, headers=caller.auth
        )
        assert (await assert_problem(resp, 400))["errors"][0]["field"] == "target_sqid"
    for params in ({"cursor": "\x00"}, {"cursor": "bDox\x00"}, {"limit": "1\x00"}):
        await assert_problem(
            await client.get("/api/pmd/posts", params=params, headers=user.auth), 400
        )
    await assert_problem(await client.get("/api/pmd/bdr/%00", headers=user.auth), 400)
    # The stream reads its query before the ticket: a NUL is refused as text.
    resp = await client.get("/api/pmd/bdr/sse", params={"ticket": "\x00" * 30})
    assert (await assert_problem(resp, 400))["errors"][0]["field"] == "ticket"
    resp = await client.post(
        "/api/pmd/action", json={"action": "hide\x00", "post_ids": [post.id]}, headers=user.auth
    )
    await assert_problem(resp, 422)
    # A NUL in a raw header line is refused by the HTTP parser.
    await assert_clean_4xx(client, http("GET", b"/api/pmd/posts", user, headers=b"X-A: a\x00b\r\n"))
    assert (await factory.post_flags([post.id]))[post.id]["hidden_by_user"] is False


# Every text a client can send, as the OpenAPI document names it: a NUL (U+0000), which
# PostgreSQL cannot store in text, is a 400 naming the field, never a 5xx from the database.
# Answered by authentication before any parsing (a 401, 403 or 404 there, as for any value).
AUTH_PARAMS = {"target_sqid", "ticket"}
# A valid body of each endpoint taking one; a text field is set to hold a NUL in turn.
BODIES: dict[str, dict[str, Any]] = {
    "/api/pmd/action": {"action": "tags", "post_ids": [1], "add": ["fine"]},
    "/api/pmd/license": {"license_id": None, "post_ids": [1]},
    "/api/pmd/bdr": {"post_ids": [1]},
    "/api/pmd/exports": {},
    "/api/pmd/policies/preview": {"name": "Old", "action": "hide", "older_than_days": 30},
    "/api/pmd/policies": {
        "name": "Old",
        "action": "hide",
        "older_than_days": 30,
        "expect_count": 0,
    },
    "/api/pmd/policies/{id}": {"name": "Renamed"},
}
NUL_TEXT = "a\x00b"


def _text_fields(doc: dict[str, Any], schema: dict[str, Any], path: str = "") -> list[str]:
    """The paths (`filter.hashtag[0]`) of every free-text string a body schema holds."""
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        return [f for option in schema["anyOf"] for f in _text_fields(doc, option, path)]
    kind = schema.get("type")
    if kind == "object":
        return [
            f
            for name, sub in schema.get("properties", {}).items()
            for f in _text_fields(doc, sub, f"{path}.{name}" if path else name)
        ]
    if kind == "array":
        return _text_fields(doc, schema["items"], f"{path}[0]")
    # A string of a format (a uuid) is refused as malformed before its text is read.
    if kind == "string" and not {"enum", "const", "format"} & schema.keys():
        return [path]
    return []


def _valid_body(path: str, post_id: int) -> dict[str, Any]:
    body = dict(BODIES[path])
    if "post_ids" in body:
        body["post_ids"] = [post_id]
    return body


def _holding(body: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    """`body` with `field` (a path of _text_fields) set to `value`; a filter's key replaces
    the ids, as an action by filter sends it."""
    out = dict(body)
    if field.startswith("filter.") and "post_ids" in out:
        out.pop("post_ids")
        out |= {"filter": {}, "expect_count": 1}
    elif field.startswith("filter."):  # a cleanup policy's filter
        out.setdefault("filter", {})
    where = out
    *parents, leaf = field.split(".")
    for name in parents:
        where[name] = dict(where.get(name, {}))
        where = where[name]
    if leaf.endswith("[0]"):
        where[leaf[:-3]] = [value]
    else:
        where[leaf] = value
    return out


def _operations(app: web.Application) -> list[tuple[str, str, dict[str, Any]]]:
    doc = app[OPENAPI_DOC]
    return [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


async def test_a_nul_in_any_query_or_path_text_is_a_4xx_naming_it(
    client: Client, app: web.Application, factory: Factory
) -> None:
    user = await factory.user()
    moderator = await factory.user(roles=["user", "moderator"])
    post = await factory.post(user)
    seen: set[str] = set()
    for method, path, op in _operations(app):
        params = [p for p in op.get("parameters", []) if p["in"] in ("query", "path")]
        if not params:
            continue
        concrete = path.replace("{id}", str(uuid.uuid4())).replace("{n}", "1")
        body = _valid_body(path, post.id) if path in BODIES else None
        for param in params:
            name = param["name"]
            for caller in (user, moderator):
                if param["in"] == "path":
                    url = path.replace("{" + name + "}", "%00")
                    url = url.replace("{id}", str(uuid.uuid4())).replace("{n}", "1")
                    resp = await client.request(method, url, json=body, headers=caller.auth)
                else:
                    resp = await client.request(
                        method, concrete, params={name: NUL_TEXT}, json=body, headers=caller.auth
                    )
                assert 400 <= resp.status < 500, (method, path, name, await resp.text())
                assert resp.content_type == "application/problem+json", (method, path, name)
                if param["in"] == "query" and name not in AUTH_PARAMS:
                    problem = await assert_problem(resp, 400)
                    assert problem["errors"][0]["field"] == name, (method, path, problem)
                    assert f"`{name}`" in problem["detail"]
                seen.add(name)
    assert {"q", "hashtag", "license", "cursor", "created_after", "last_event_id"} <= seen
    assert (await factory.post_flags([post.id]))[post.id]["hidden_by_user"] is False
    await healthy(client, user)


async def test_a_nul_in_any_body_text_is_a_400_naming_it(
    client: Client, app: web.Application, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    post = await factory.post(user)
    doc = app[OPENAPI_DOC]
    checked: set[tuple[str, str]] = set()
    for method, path, op in _operations(app):
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        if not schema:
            continue
        assert path in BODIES, f"{method} {path}: give it a valid body in BODIES"
        base = _valid_body(path, post.id)
        for field in _text_fields(doc, schema["schema"]):
            body = _holding(base, field, NUL_TEXT)
            url = path.replace("{id}", str(uuid.uuid4()))
            resp = await client.request(method, url, json=body, headers=user.auth)
            problem = await assert_problem(resp, 400)
            assert problem["errors"][0]["field"] == field, (path, body, problem)
            assert f"`{field}`" in problem["detail"]
            checked.add((path, field))
    assert {
        ("/api/pmd/action", "filter.q"),
        ("/api/pmd/action", "filter.hashtag[0]"),
        ("/api/pmd/action", "filter.license"),
        ("/api/pmd/action", "add[0]"),
        ("/api/pmd/action", "remove[0]"),
        ("/api/pmd/license", "filter.created_after"),
        ("/api/pmd/bdr", "target_sqid"),
        ("/api/pmd/exports", "since"),
    } <= checked
    assert (await factory.post_flags([post.id]))[post.id]["hidden_by_user"] is False
    assert await pool.fetchval("SELECT count(*) FROM batch_download_requests") == 0
    await healthy(client, user)


async def test_invalid_utf8_anywhere(client: Client, factory: Factory) -> None:
    user = await factory.user()
    moderator = await factory.user(roles=["user", "moderator"])
    for caller in (user, moderator):
        for path in POSTS:
            for body in (
                b'{"action": "hide", "post_ids": [1], "target_sqid": "\xff\xfe"}',
                b'{"action": "hid\xc3", "post_ids": [1]}',
                b'{"\xed\xa0\x80": 1}',  # a UTF-8-encoded surrogate
            ):
                request = http("POST", path.encode(), caller, body)
                await assert_clean_4xx(client, request, 400, 422)
        # Percent-encoded invalid UTF-8 in the query and the path, and raw bytes in the target.
        for target in (
            b"/api/pmd/posts?target_sqid=%FF%FE",
            b"/api/pmd/posts?cursor=%C3%28",
            b"/api/pmd/posts?target_sqid=%ED%A0%80",
            b"/api/pmd/bdr/%FF%FE",
            b"/api/pmd/posts?limit=\xff",
            b"/api/pmd/\xff\xfe",
        ):
            await assert_clean_4xx(client, http("GET", target, caller))
    for ticket in (b"%FF", b"%ED%A0%80", b"\xff\xfe" * 20):
        await assert_clean_4xx(client, http("GET", b"/api/pmd/bdr/sse?ticket=" + ticket), 400, 401)
        # Header values that are not UTF-8.
        await assert_clean_4xx(
            client, http("GET", b"/api/pmd/posts", headers=b"Authorization: Bearer \xc3\x28\r\n")
        )
    await healthy(client, user)


# --- CR/LF in headers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Request-ID: abc\r\n Injected: yes\r\n",  # obs-fold
        b"X-Request-ID: abc\rInjected: yes\r\n",  # a bare CR
        b"X-Request-ID: abc\nInjected: yes\r\n",  # a bare LF inside the block
        b"X Request ID: abc\r\n",  # a space in a name
    ],
    ids=["obs-fold", "bare CR", "bare LF", "space in name"],
)
async def test_crlf_in_headers(client: Client, factory: Factory, headers: bytes) -> None:
    user = await factory.user()
    response = await raw(client, http("GET", b"/api/pmd/posts", user, headers=headers))
    status = status_of(response)
    assert status is None or 400 <= status < 500 or status == 200, response[:300]
    head = response.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\ninjected:" not in head, head  # nothing the client sent became a header
    await healthy(client, user)


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Transfer-Encoding: chunked, identity\r\n",
    ],
    ids=["CL+TE", "two CLs", "bad TE"],
)
async def test_request_smuggling_headers_are_400(
    client: Client, factory: Factory, headers: bytes
) -> None:
    """Framing a proxy in front could read differently from the server is refused outright."""
    user = await factory.user()
    response = await raw(client, http("GET", b"/api/pmd/posts", user, headers=headers))
    assert status_of(response) == 400, response[:300]
    await healthy(client, user)


async def test_the_request_id_header_is_never_echoed_raw(client: Client, factory: Factory) -> None:
    """An X-Request-ID that is not a plain token is replaced, never copied into a response."""
    user = await factory.user()
    post = await factory.post(user)
    body = b'{"post_ids": [%d]}' % post.id
    response = await raw(
        client, http("POST", b"/api/pmd/bdr", user, body, b"X-Request-ID: a%0d%0aSet-Cookie: x\r\n")
    )
    assert status_of(response) == 202, response[:300]
    assert b"set-cookie" not in response.lower()
    stored = await factory.pool.fetchval("SELECT request_id FROM batch_download_requests")
    assert stored is not None and "%" not in stored


# --- slow and idle clients -----------------------------------------------------------------------


async def test_endless_header_lines_and_too_many_headers_are_refused(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    long_line = b"GET /api/pmd/posts HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n"
    await assert_clean_4xx(client, long_line, 400, 431)
    long_url = b"GET /api/pmd/posts?cursor=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    await assert_clean_4xx(client, long_url, 400, 414, 431)
    many = b"GET /api/pmd/posts HTTP/1.1\r\nHost: x\r\n" + b"X-H: v\r\n" * 10_000 + b"\r\n"
    await assert_clean_4xx(client, many, 400, 431)
    await healthy(client, user)


async def test_a_filter_of_the_most_tags_reaches_the_app_and_a_bad_one_is_told_why(
    client: Client, factory: Factory
) -> None:
    """64 tags of 64 characters, percent-encoded, make a request line of about 25 KB: past
    the HTTP parser's default, within the app's own, so it is answered by the app."""
    user = await factory.user()
    tags = [f"{'é' * 60}{n:04d}" for n in range(64)]
    resp = await client.get(
        "/api/pmd/posts", params=[("hashtag", t) for t in tags], headers=user.auth
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["total_count"] == 0
    resp = await client.get(
        "/api/pmd/posts", params={"hashtag": tags, "created_after": "x" * 20_000}, headers=user.auth
    )
    problem = await assert_problem(resp, 400)
    assert "created_after" in problem["detail"]


def _server_connections(client: Client) -> int:
    runner = client.server.runner
    assert runner is not None and runner.server is not None
    return len(runner.server.connections)


async def _wait_for_connections(client: Client, at_most: int) -> None:
    async def released() -> bool:
        return _server_connections(client) <= at_most

    await eventually(
        released, 10, lambda: f"{_server_connections(client)} connections left, not {at_most}"
    )


async def test_slowloris_clients_do_not_hold_up_others(client: Client, factory: Factory) -> None:
    """Clients that trickle a request (headers, or a body) and never finish: others are served
    meanwhile, and everything is released when they give up. aiohttp has no header-read
    timeout of its own (a proxy in front sets one); the test gives up after 3 seconds."""
    user = await factory.user()
    await healthy(client, user)  # the test client's own keep-alive connection is in the baseline
    baseline = _server_connections(client)
    slow: list[asyncio.StreamWriter] = []
    head_only = b"POST /api/pmd/action HTTP/1.1\r\nHost: x\r\nX-Slow: "
    body_slow = http("POST", b"/api/pmd/action", user, b"")
    body_slow = body_slow.replace(b"Content-Length: 0", b"Content-Length: 1000")
    for i in range(100):
        _, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(head_only if i % 2 else body_slow + b'{"action": ')
        slow.append(writer)

    for _ in range(15):  # 3 s: one byte every 0.2 s on every slow connection
        for w in slow:
            w.write(b"a")
        # Another client is served while every slow one is still open mid-request. The bound
        # only turns a server stuck behind them into a failure ("hung"), no claim about speed.
        await asyncio.wait_for(healthy(client, user), HUNG)
        assert _server_connections(client) >= baseline - 1 + len(slow)
        await asyncio.sleep(0.2)
    for w in slow:
        w.close()
    await _wait_for_connections(client, baseline)
    await healthy(client, user)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def many_fds() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 and hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2500:
        pytest.skip("needs ~2,100 open files (client and server share this process)")


async def test_a_thousand_idle_connections(
    client: Client, factory: Factory, many_fds: None
) -> None:
    """1,000 connections that never send a byte, twice: others are served while they are open,
    and once they close the server holds no connection, task or file descriptor more."""
    user = await factory.user()
    await healthy(client, user)
    baseline_conns = _server_connections(client)
    baseline_tasks = len(asyncio.all_tasks())
    after_rounds: list[int] = []
    for _ in range(2):
        writers: list[asyncio.StreamWriter] = []
        for _ in range(1000):
            _, writer = await asyncio.open_connection(client.host, client.port)
            writers.append(writer)
        assert _server_connections(client) >= 1000 + baseline_conns - 1
        for _ in range(20):
            await healthy(client, user)
        for writer in writers:
            writer.close()
        await _wait_for_connections(client, baseline_conns)
        after_rounds.append(_open_fds())

    async def tasks_ended() -> bool:  # each closed connection's handler task finishes
        return len(asyncio.all_tasks()) <= baseline_tasks + 2

    await eventually(tasks_ended, 10, lambda: f"{len(asyncio.all_tasks())} tasks still running")
    assert after_rounds[1] <= after_rounds[0] + 10, after_rounds  # no growth round to round
    await healthy(client, user)


async def test_idle_and_trickling_connections_are_closed_by_the_keepalive_timeout(
    app: web.Application, factory: Factory
) -> None:
    """aiohttp's own bound on a slowloris: its keep-alive timer runs from the moment a
    connection opens, and a connection whose request is still incomplete when it fires is
    closed. `server.py` keeps 130 s for it (web/serve.py) and bounds a head by
    HEADER_TIMEOUT_SECONDS (web/connections.py, tests/processes/test_connection_bounds.py);
    here 1 s keeps the test short."""
    server = TestServer(app)
    await server.start_server(keepalive_timeout=1.0)
    try:
        conns = [await asyncio.open_connection(server.host, server.port) for _ in range(40)]
        for i, (_, writer) in enumerate(conns):
            if i % 2:
                writer.write(b"GET /api/pmd/posts HTTP/1.1\r\nHost: x\r\nX-Slow: a")

        async def closed(reader: asyncio.StreamReader) -> bool:
            # Without the timer nothing would ever close them: HUNG only ends such a wait.
            try:
                return await asyncio.wait_for(reader.read(), HUNG) == b""
            except (TimeoutError, ConnectionError):
                return False

        results = await asyncio.gather(*(closed(r) for r, _ in conns))
        assert all(results), results.count(False)
        for _, writer in conns:
            writer.close()
    finally:
        await server.close()
