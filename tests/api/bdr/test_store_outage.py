"""A store that accepts connections but never answers (SeaweedFS frozen with SIGSTOP).

Each test freezes a SeaweedFS process of this module's own (never the session's, which other
tests use) and thaws it before it ends. Downloads and removals must answer while it is frozen:
a download 503 with Retry-After, a removal 204 (the row no longer points at the ZIP; the
daily cleanup removes the object), a proxied body already under way cut short. /readyz and
/metrics say that the store is failing, from those calls alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core.settings import Settings
from support.seaweed import Seaweed, running_seaweed
from support.seeding import Factory
from tests.downloads import BIG, HANG_GUARD, open_raw, ready_zip, start
from tests.helpers import assert_problem, bucket_on, eventually, fetch_item


@pytest.fixture(scope="module")
def own_weed() -> Iterator[tuple[Seaweed, str]]:
    """A server of this module's own (its tests freeze it; other modules use the session's),
    and a bucket on it."""
    with running_seaweed() as weed:
        yield weed, bucket_on(weed)


@contextlib.asynccontextmanager
async def frozen(weed: Seaweed) -> AsyncIterator[None]:
    weed.freeze()
    try:
        yield
    finally:
        weed.thaw()


@pytest.fixture(params=["redirect", "proxy"])
def on_own_weed(
    request: pytest.FixtureRequest,
    settings: Settings,
    own_weed: tuple[Seaweed, str],
    s3_prefix: str,
) -> Settings:
    # 1 s instead of the default 5: the same path, a quicker test.
    return replace(
        own_weed[0].settings(settings, own_weed[1], f"{s3_prefix}/zips"),
        zip_download_mode=request.param,
        store_timeout_seconds=1.0,
        store_idle_seconds=1.0,
    )


async def _metric(client: Any, name: str) -> float:
    text = await (await client.get("/metrics")).text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_a_frozen_store_answers_downloads_503_and_removals_204(
    aiohttp_client: AiohttpClient,
    factory: Factory,
    on_own_weed: Settings,
    own_weed: tuple[Seaweed, str],
    redis_clean: None,
) -> None:
    settings = on_own_weed
    client = await start(aiohttp_client, settings)
    owner, url, body = await ready_zip(client, factory, settings)
    _, kept_url, _ = await ready_zip(client, factory, settings, owner=owner)
    removed_id = kept_url.split("/")[4]
    assert (await (await client.get("/readyz")).json())["checks"]["store"] == "ok"
    async with frozen(own_weed[0]):
        for method in (client.get, client.head):
            resp = await asyncio.wait_for(method(url, headers=owner.auth), HANG_GUARD)
            assert resp.status == 503, await resp.text()
            assert resp.headers["Retry-After"] == "30"
            if method is client.get:
                problem = await assert_problem(resp, 503, "store_unavailable")
                assert "try again" in problem["detail"]
        resp = await asyncio.wait_for(
            client.delete(f"/api/pmd/bdr/{removed_id}", headers=owner.auth), HANG_GUARD
        )
        assert resp.status == 204
        ready = await client.get("/readyz")
        assert ready.status == 200  # the database and Redis serve everything else
        store = (await ready.json())["checks"]["store"]
        assert store.startswith("failing for ") and "no answer within 1 s" in store, store
        assert await _metric(client, "pmd_object_store_failing ") == 1
        assert await _metric(client, "pmd_object_store_failures_total ") >= 3
    # Nothing was concluded from the outage: the ZIP is still ready, and served once the
    # store answers; the removed one is gone for its owner, its object left to the cleanup.
    assert (await fetch_item(client, owner, url.split("/")[4]))["status"] == "ready"
    assert (await fetch_item(client, owner, removed_id))["status"] == "expired"

    async def served() -> bool:
        resp = await client.get(url, headers=owner.auth, allow_redirects=False)
        return resp.status in (200, 302)

    await eventually(served, HANG_GUARD, "the thawed store serving the ZIP")
    assert (await (await client.get("/readyz")).json())["checks"]["store"] == "ok"
    assert await _metric(client, "pmd_object_store_failing ") == 0
    if settings.zip_download_mode == "proxy":
        assert await (await client.get(url, headers=owner.auth)).read() == body


@pytest.mark.parametrize("on_own_weed", ["proxy"], indirect=True)
async def test_a_store_frozen_mid_body_cuts_the_download_short(
    aiohttp_client: AiohttpClient,
    factory: Factory,
    on_own_weed: Settings,
    own_weed: tuple[Seaweed, str],
    redis_clean: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Proxy mode: the store falls silent mid-body; after STORE_IDLE_SECONDS the client's
    connection is closed short of the Content-Length (it must not look complete), with one
    WARNING line and no traceback."""
    settings = on_own_weed
    client = await start(aiohttp_client, settings)
    owner, url, _ = await ready_zip(client, factory, settings, size=BIG)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        reader, writer, head = await open_raw(client, url, owner)
        try:
            assert head.startswith("HTTP/1.1 200")
            got = len(await reader.readexactly(2**20))
            async with frozen(own_weed[0]):
                with contextlib.suppress(ConnectionError):
                    async with asyncio.timeout(HANG_GUARD):
                        while chunk := await reader.read(2**20):
                            got += len(chunk)
                assert got < BIG
                assert "failing" in (await (await client.get("/readyz")).json())["checks"]["store"]
        finally:
            writer.transport.abort()
    cut = [r for r in caplog.records if "failed mid-body" in r.getMessage()]
    assert len(cut) == 1 and cut[0].levelno == logging.WARNING and cut[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
