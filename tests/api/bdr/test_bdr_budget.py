"""What a download may cost: bytes per request (declared, then as built), bytes per day, and
free disk in the ZIP folder."""

from __future__ import annotations

import shutil
from typing import Any

from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core.codes import ITEM_SENTENCES, HostCode
from pmd_service.core.settings import Settings
from pmd_service.storage.budget import human_bytes
from pmd_service.web.app import create_app
from support.seeding import Factory
from tests.helpers import assert_problem, fetch_item, request_bdr, run_worker

Client = TestClient[Any, Any]
MiB = 2**20


async def _declare(factory: Factory, post_ids: list[int], size: int) -> None:
    await factory.pool.execute(
        "UPDATE post_files SET file_bytes = $2 WHERE post_id = ANY($1::int[])", post_ids, size
    )


def test_sizes_read_as_people_read_them() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(2 * 2**30) == "2.0 GiB"
    assert human_bytes(5000 * 2**30) == "5000.0 GiB"


async def test_a_request_over_the_size_cap_is_refused_saying_the_size(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, bdr_max_bytes=100 * MiB)))
    user, posts = await factory.owner_and_posts(3)
    ids = [p.id for p in posts]
    await _declare(factory, ids, 40 * MiB)
    resp = await client.post("/api/pmd/bdr", json={"post_ids": ids}, headers=user.auth)
    body = await assert_problem(resp, 400, "bdr_too_large")
    assert "120.0 MiB" in body["detail"] and "100.0 MiB" in body["detail"]
    assert body["size_bytes"] == 120 * MiB and body["limit_bytes"] == 100 * MiB
    assert await factory.pool.fetchval("SELECT count(*) FROM batch_download_requests") == 0
    await request_bdr(client, user, ids[:2])  # 80 MiB fits


async def test_the_daily_byte_budget_is_the_requesters(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, bdr_daily_bytes=100 * MiB)))
    user = await factory.user()
    mod = await factory.user(roles=["moderator"])
    posts = [await factory.post(user) for _ in range(3)]
    ids = [p.id for p in posts]
    await _declare(factory, ids, 30 * MiB)
    await request_bdr(client, user, ids)  # 90 MiB of 100
    resp = await client.post("/api/pmd/bdr", json={"post_ids": ids[:1]}, headers=user.auth)
    body = await assert_problem(resp, 429, "bdr_daily_bytes_limit")
    assert "30.0 MiB" in body["detail"] and "100.0 MiB" in body["detail"]
    assert "90.0 MiB" in body["detail"] and "midnight UTC" in body["detail"]
    assert 0 < int(resp.headers["Retry-After"]) <= 86400
    # A moderator asking on the user's behalf spends the moderator's budget.
    await request_bdr(client, mod, ids, target_sqid=user.sqid)


async def test_a_zip_that_grows_past_the_cap_fails_saying_so(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    settings = replace(settings, bdr_max_bytes=150_000)
    client = await aiohttp_client(create_app(settings))
    user = await factory.user()
    posts = [await factory.post(user, data=b"\x89PNG" + bytes(range(256)) * 400) for _ in range(3)]
    ids = [p.id for p in posts]
    await _declare(factory, ids, 1)  # the host's figures understate the files
    item = await request_bdr(client, user, ids)
    await run_worker(settings)
    done = await fetch_item(client, user, item["id"])
    assert done["status"] == "failed"
    # The host's app knows no code of its own for it: `internal`, and ours beside it.
    assert (done["error_code"], done["error_reason"]) == ("internal", "too_large")
    assert done["error_message"] == ITEM_SENTENCES[HostCode.INTERNAL]
    assert list(settings.zip_path.rglob("*.zip")) == []
    assert list(settings.zip_path.rglob("*.part")) == []


async def test_new_requests_wait_while_the_zip_folder_is_short_of_space(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    user = await factory.user()
    post = await factory.post(user)
    free = shutil.disk_usage(settings.data_dir).free
    short = replace(settings, zip_min_free_bytes=free + 2**40)  # more than there is
    client = await aiohttp_client(create_app(short))
    resp = await client.post("/api/pmd/bdr", json={"post_ids": [post.id]}, headers=user.auth)
    body = await assert_problem(resp, 503, "low_disk_space")
    assert "disk space" in body["detail"]
    assert resp.headers["Retry-After"] == "300"
    assert await factory.pool.fetchval("SELECT count(*) FROM batch_download_requests") == 0
    # Everything else still works.
    assert (await client.get("/api/pmd/bdr", headers=user.auth)).status == 200
    roomy = await aiohttp_client(create_app(replace(settings, zip_min_free_bytes=2**20)))
    await request_bdr(roomy, user, [post.id])


async def test_a_request_that_could_never_be_served_is_a_400_even_past_the_daily_limit(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    """What the request asks for is checked before the day's count: someone at the limit who
    sends another's post, or a download over the size cap, is told what to fix (400), not to
    wait until midnight for a request that would be refused then too (429)."""
    client = await aiohttp_client(
        create_app(replace(settings, bdr_daily_limit=1, bdr_max_bytes=100 * MiB))
    )
    user, posts = await factory.owner_and_posts(3)
    stranger_post = await factory.post(await factory.user())
    ids = [p.id for p in posts]
    await request_bdr(client, user, ids[:1])  # the day's one request
    resp = await client.post(
        "/api/pmd/bdr", json={"post_ids": [ids[1], stranger_post.id]}, headers=user.auth
    )
    body = await assert_problem(resp, 400, "posts_not_owned")
    assert str(stranger_post.id) in body["detail"]
    await _declare(factory, ids, 60 * MiB)
    resp = await client.post("/api/pmd/bdr", json={"post_ids": ids[1:]}, headers=user.auth)
    assert (await assert_problem(resp, 400, "bdr_too_large"))["size_bytes"] == 120 * MiB
    # A request that is fine otherwise still meets the limit.
    resp = await client.post("/api/pmd/bdr", json={"post_ids": ids[1:2]}, headers=user.auth)
    await assert_problem(resp, 429, "bdr_daily_limit")
