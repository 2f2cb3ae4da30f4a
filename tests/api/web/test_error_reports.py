"""Errors reach the host's Sentry: a real sentry-sdk sending real envelopes over HTTP to a local
ingest endpoint, from a request handler and from a job, with nothing secret in either."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from aiohttp import web
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core import error_reports
from pmd_service.core.settings import Settings
from pmd_service.features.bdr.job import Run
from pmd_service.host.tokens import mint_token
from pmd_service.web.app import create_app
from support.seeding import Factory
from support.stack import free_port
from tests.helpers import CHECKOUT, SECRET, WORKER_FORMS, eventually, request_bdr, run_worker

Client = TestClient[Any, Any]

SIGNED = (
    "https://s3.example/pmd/bdr/x.zip?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20261123&X-Amz-Signature=0123456789abcdef0123456789abcdef"
)
TICKET = "tkt-5f2b9c0e77aa41d1a0b3"
DB_PASSWORD = "pg-pass-4c1e9a7b"


@dataclass
class Ingest:
    """A Sentry ingest endpoint: every event item of every envelope it is sent."""

    port: int
    events: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/42"

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp inflates a gzip or deflate body itself
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        self.raw.append(body)
        lines = body.split(b"\n")
        i = 1  # line 0: the envelope's header
        while i < len(lines) and lines[i]:
            item = json.loads(lines[i])
            payload = lines[i + 1]
            if item.get("type") == "event":
                self.events.append(json.loads(payload))
            i += 2
        return web.json_response({"id": uuid.uuid4().hex})


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    box = Ingest(free_port())
    app = web.Application()
    app.router.add_post("/api/42/envelope/", box.receive)
    app.router.add_post("/api/42/store/", box.receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", box.port).start()
    yield box
    await runner.cleanup()


@pytest.fixture
def reporting(settings: Settings, ingest: Ingest) -> Iterator[Settings]:
    """Sentry on for this test (sentry-sdk is process-wide), off again after it."""
    configured = replace(
        settings,
        sentry_dsn=ingest.dsn,
        sentry_environment="test",
        sentry_release="pmd-service@test",
        database_url=settings.database_url,
        smtp_password=DB_PASSWORD,
    )
    assert error_reports.configure(configured, "pmd-test")
    yield configured
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # no DSN: the integrations stay installed but send nothing
    error_reports._enabled = False


async def flushed(ingest: Ingest, within: float = 10) -> None:
    await asyncio.to_thread(sentry_sdk.flush, within)


def assert_nothing_secret(ingest: Ingest, *secrets: str) -> None:
    sent = b"\n".join(ingest.raw).decode("utf-8", "replace")
    for secret in secrets:
        assert secret not in sent, f"{secret[:12]}… reached Sentry"


async def test_an_error_in_a_handler_reaches_sentry_scrubbed(
    aiohttp_client: AiohttpClient,
    reporting: Settings,
    ingest: Ingest,
    factory: Factory,
    redis_clean: None,
) -> None:
    user = await factory.user("reporter")
    token = mint_token(SECRET, user.sqid, ttl_seconds=600)

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError(
            f"broken with {request.headers['Authorization']}, the key {SECRET}, "
            f"a password {DB_PASSWORD} and {SIGNED}"
        )

    app = create_app(reporting)
    app.router.add_get("/api/pmd/broken", broken)
    client = await aiohttp_client(app)
    resp = await client.get(
        f"/api/pmd/broken?ticket={TICKET}",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "rid-handler-1"},
    )
    assert resp.status == 500
    assert resp.content_type == "application/problem+json"
    await flushed(ingest)

    await eventually(_has(ingest, "rid-handler-1"), 10, "the handler's event at the ingest")
    event = next(e for e in ingest.events if e.get("tags", {}).get("request_id") == "rid-handler-1")
    assert event["environment"] == "test"
    assert event["release"] == "pmd-service@test"
    assert event["tags"]["process"] == "pmd-test"
    text = json.dumps(event)
    assert "RuntimeError" in text and "broken with" in text
    assert_nothing_secret(ingest, token, SECRET, TICKET, DB_PASSWORD, "0123456789abcdef0123")


@pytest.fixture
async def bdr_id(
    aiohttp_client: AiohttpClient, reporting: Settings, factory: Factory, redis_clean: None
) -> str:
    """A download request made through the app with reporting on, not built yet: its id."""
    owner = await factory.user("jobber")
    post = await factory.post(owner)
    client = await aiohttp_client(create_app(reporting))
    item = await request_bdr(client, owner, [post.id])
    return str(item["id"])


async def test_an_error_in_a_job_reaches_sentry_with_the_bdr_id(
    reporting: Settings, ingest: Ingest, bdr_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:

    async def archives(self: Run) -> AsyncGenerator[Any]:
        # A bug deep in a build: the job's own code raising, with secrets in its message.
        raise RuntimeError(f"cannot upload to {SIGNED} with key {SECRET} ({DB_PASSWORD})")
        yield  # an async generator, as the run's own

    monkeypatch.setattr(Run, "archives", archives)
    await run_worker(reporting)
    await flushed(ingest)

    await eventually(_has_bdr(ingest, bdr_id), 10, "the job's event at the ingest")
    event = next(e for e in ingest.events if e.get("tags", {}).get("bdr_id") == bdr_id)
    assert event["tags"]["request_id"]  # the request id the BDR's row carries
    assert "cannot upload to" in json.dumps(event)
    assert_nothing_secret(ingest, SECRET, DB_PASSWORD, "0123456789abcdef0123", "AKIAEXAMPLE")


@pytest.mark.parametrize("form", WORKER_FORMS)
async def test_an_exception_escaping_a_job_is_one_scrubbed_event_in_either_worker_form(
    reporting: Settings,
    ingest: Ingest,
    bdr_id: str,
    monkeypatch: pytest.MonkeyPatch,
    form: str,
) -> None:
    """Not caught by the job's own handler (which logs it): raised out of process_bdr, to arq.
    The supported form builds its Worker directly, which sentry-sdk's arq integration does not
    wrap: it logged an ERROR and sent nothing. The `arq` command's form sends one, not two."""
    from pmd_service.jobs import driver

    async def broken(*args: Any) -> str:
        raise RuntimeError(f"escaped with {SIGNED}, key {SECRET} ({DB_PASSWORD})")

    monkeypatch.setattr(driver, "_attempt", broken)
    await run_worker(reporting, form)
    await flushed(ingest)

    await eventually(_has_bdr(ingest, bdr_id), 10, "the job's event at the ingest")
    await asyncio.sleep(0.5)  # a second event, if one were coming, arrives meanwhile
    await flushed(ingest)
    events = [e for e in ingest.events if e.get("tags", {}).get("bdr_id") == bdr_id]
    assert len(events) == 1, [e.get("logger") or e.get("exception") for e in events]
    [event] = events
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["exception"]["values"][-1]["mechanism"] == {"type": "arq", "handled": False}
    assert "escaped with" in json.dumps(event)
    assert_nothing_secret(ingest, SECRET, DB_PASSWORD, "0123456789abcdef0123", "AKIAEXAMPLE")


def test_a_dsn_without_the_extra_is_one_clear_line(tmp_path: Path) -> None:
    """An install without the `sentry` extra (sentry_sdk made unimportable in a child
    interpreter) stops at start with one line saying what to install; no DSN starts nothing."""
    script = f"""
import sys
from pathlib import Path
sys.modules["sentry_sdk"] = None  # as if the extra were not installed
from msgspec.structs import replace
from pmd_service.core import error_reports
from pmd_service.core.settings import ConfigError, Settings
s = Settings(database_url="postgresql://", redis_url="redis://", jwt_secret_key="x" * 32,
             data_dir=Path({str(tmp_path)!r}))
assert error_reports.configure(s, "t") is False
try:
    error_reports.configure(replace(s, sentry_dsn="http://k@127.0.0.1:9/1"), "t")
except ConfigError as exc:
    print(exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=CHECKOUT
    )
    assert "pip install 'pmd-service[sentry]'" in out.stdout, out.stdout + out.stderr


def _has(ingest: Ingest, request_id: str) -> Any:
    async def check() -> bool:
        return any(e.get("tags", {}).get("request_id") == request_id for e in ingest.events)

    return check


def _has_bdr(ingest: Ingest, bdr_id: str) -> Any:
    async def check() -> bool:
        return any(e.get("tags", {}).get("bdr_id") == bdr_id for e in ingest.events)

    return check
