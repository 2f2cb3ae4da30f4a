"""Structured logs: one request id from the POST through the worker to the email, JSON lines that
parse, readable text lines, and no credential in any line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace

from pmd_service.core import logs
from pmd_service.core.settings import Settings
from pmd_service.sse import replay
from support.mailbox import Mailbox
from support.seeding import Factory
from support.sse import SSE, Stream
from tests.helpers import run_worker

Client = TestClient[Any, Any]


class Captured:
    """What the production handler (logs.handler) writes, in both formats."""

    def __init__(self) -> None:
        self.json_out = io.StringIO()
        self.text_out = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.json_out.getvalue().splitlines()]

    def text(self) -> str:
        return self.text_out.getvalue()


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[Captured]:
    caplog.set_level(logging.DEBUG)  # everything, aiohttp's access lines included
    out = Captured()
    handlers = [logs.handler("json", out.json_out), logs.handler("text", out.text_out)]
    root = logging.getLogger()
    for h in handlers:
        root.addHandler(h)
    try:
        yield out
    finally:
        for h in handlers:
            root.removeHandler(h)


async def test_one_request_id_from_the_post_to_the_worker_and_the_email(
    client: Client,
    factory: Factory,
    settings: Settings,
    smtp: Mailbox,
    pool: asyncpg.Pool,
    captured: Captured,
) -> None:
    user = await factory.user()
    post = await factory.post(user)
    rid = "trace-7f3a.e2e_1"
    resp = await client.post(
        "/api/pmd/bdr",
        json={"post_ids": [post.id], "send_email": True},
        headers={**user.auth, "X-Request-ID": rid},
    )
    assert resp.status == 202
    assert resp.headers["X-Request-ID"] == rid
    bdr_id = (await resp.json())["id"]
    assert await pool.fetchval("SELECT request_id FROM batch_download_requests") == rid

    await run_worker(replace(settings, smtp_host=smtp.host, smtp_port=smtp.port))

    mine = [line for line in captured.lines() if line.get("request_id") == rid]
    loggers = {line["logger"] for line in mine}
    assert "pmd_service.features.bdr.service" in loggers  # the server's line for the POST
    assert "pmd_service.features.bdr.job" in loggers  # the worker's lines for that BDR
    assert any(bdr_id in line["msg"] and "ready" in line["msg"] for line in mine)
    # Lines of no request (arq's own, start-up) carry no id rather than a wrong one.
    assert all(line.get("request_id") in (None, rid) for line in captured.lines())
    assert f"[{rid}]: BDR {bdr_id} ready" in captured.text()

    assert len(smtp.messages) == 1
    assert smtp.messages[0]["X-Request-ID"] == rid


async def test_every_response_echoes_a_safe_request_id_or_a_new_one(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    post = await factory.post(user)
    made = await client.get("/api/pmd/posts", headers=user.auth)
    assert len(made.headers["X-Request-ID"]) == 32
    problem = await client.get("/api/pmd/posts")  # 401 from the auth middleware
    assert problem.status == 401
    assert problem.headers["X-Request-ID"] != made.headers["X-Request-ID"]
    kept = await client.get("/healthz", headers={"X-Request-ID": "lb-123"})
    assert kept.headers["X-Request-ID"] == "lb-123"
    # An id that could forge log lines or is too long is replaced, and the BDR gets the new one.
    for hostile in ["a b\tc", "x" * 65, '"}{"level":"error', "a%0Ab"]:
        resp = await client.post(
            "/api/pmd/bdr",
            json={"post_ids": [post.id]},
            headers={**user.auth, "X-Request-ID": hostile},
        )
        assert resp.status == 202
        echoed = resp.headers["X-Request-ID"]
        assert echoed != hostile
        assert len(echoed) == 32
        stored = await pool.fetchval(
            "SELECT request_id FROM batch_download_requests WHERE id = $1::uuid",
            (await resp.json())["id"],
        )
        assert stored == echoed


async def test_sse_stream_carries_the_request_id(client: Client, factory: Factory) -> None:
    user = await factory.user()
    resp = await client.get(SSE, headers={**user.auth, "X-Request-ID": "sse-1"})
    try:
        assert resp.status == 200
        assert resp.headers["X-Request-ID"] == "sse-1"
        await Stream(resp).opening()
    finally:
        resp.close()


async def test_a_failed_sse_opening_logs_and_answers_with_its_request_id(
    client: Client, factory: Factory, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream runs without the id in its context (it would cost every open stream); its
    failure's lines and answer carry one all the same (they said "-", and the answer none)."""
    user = await factory.user()

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the opening's query broke")

    monkeypatch.setattr(replay, "opening", broken)
    resp = await client.get(SSE, headers={**user.auth, "X-Request-ID": "sse-err-1"})
    assert resp.status == 500
    assert resp.headers["X-Request-ID"] == "sse-err-1"
    resp = await client.get(SSE, headers=user.auth)
    assert resp.status == 500
    made = resp.headers["X-Request-ID"]
    assert len(made) == 32
    failed = [line for line in captured.lines() if line["msg"].startswith("unhandled error in GET")]
    assert [line.get("request_id") for line in failed] == ["sse-err-1", made]
    assert "[sse-err-1]" in captured.text()
    refused = await client.get(SSE)  # no token: a 401, no line, the id on the answer
    assert refused.status == 401
    assert len(refused.headers["X-Request-ID"]) == 32


def test_json_lines_parse_and_text_lines_show_the_id() -> None:
    json_out, text_out = io.StringIO(), io.StringIO()
    log = logging.getLogger("pmd_service.test_logging")
    log.propagate = False
    log.setLevel(logging.INFO)
    for h in (logs.handler("json", json_out), logs.handler("text", text_out)):
        log.addHandler(h)
    try:
        log.info("outside any request")
        with logs.request_id_set("abc-1"):
            log.info('quotes " and newlines\n and ünïcode ✨')
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("failed")
    finally:
        log.handlers.clear()
        log.propagate = True
    lines = [json.loads(x) for x in json_out.getvalue().splitlines()]
    assert [x["msg"] for x in lines] == [
        "outside any request",
        'quotes " and newlines\n and ünïcode ✨',
        "failed",
    ]
    assert "request_id" not in lines[0]
    assert [x["request_id"] for x in lines[1:]] == ["abc-1", "abc-1"]
    assert lines[2]["level"] == "error"
    assert "ValueError: boom" in lines[2]["exc"]
    assert {"ts", "level", "logger", "msg"} <= lines[0].keys()
    text = text_out.getvalue()
    assert "INFO pmd_service.test_logging [-]: outside any request" in text
    assert "[abc-1]: quotes" in text


async def test_tokens_and_tickets_never_reach_the_logs(
    client: Client, factory: Factory, captured: Captured
) -> None:
    user = await factory.user()
    token = user.auth["Authorization"].removeprefix("Bearer ")
    resp = await client.post("/api/pmd/bdr/sse-ticket", headers=user.auth)
    ticket = (await resp.json())["ticket"]
    stream = await client.get(SSE, params={"ticket": ticket, "last_event_id": "0"})
    try:
        assert stream.status == 200
        await Stream(stream).opening()
    finally:
        stream.close()
    # A spent ticket and a bad token: answered 401, and aiohttp's access line for each request
    # (on in this test server, unlike server.py) holds the query string.
    assert (await client.get(SSE, params={"ticket": ticket})).status == 401
    bad = {"Authorization": f"Bearer {token}x"}
    assert (await client.get("/api/pmd/posts", headers=bad)).status == 401
    # Code that logs a header or an error quoting a token by mistake still leaks nothing.
    log = logging.getLogger("pmd_service.test_logging")
    log.warning("retrying with %s", {"Authorization": f"Bearer {token}"})
    log.warning("callback GET /x?a=1&ticket=%s failed", ticket)
    try:
        raise RuntimeError(f"token {token} rejected")
    except RuntimeError:
        log.exception("unexpected")

    for out in (captured.json_out.getvalue(), captured.text()):
        assert token not in out
        assert token[:-10] not in out  # not even its header and payload
        assert ticket not in out
        assert "ticket=[redacted]" in out  # the access lines were there, masked
        assert "Bearer [redacted]" in out
