"""The host's own rules in every bulk write, against posts shaped as the host's migrations make
them: metadata_modified_at moves with updated_at (its players sync on it), a NoDerivatives
license turns remixable off in the same statement (rule L5), and the host's cached feeds are
dropped after every write that changed a row."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core.settings import Settings
from pmd_service.features.posts.endpoints import FEED_DROPS
from pmd_service.features.posts.host_cache import FeedDrops, create_host_cache
from pmd_service.web.app import create_app
from support.seeding import Factory
from tests.helpers import eventually

Client = TestClient[Any, Any]

_LONG_AGO = "2001-01-01T00:00:00Z"


async def _stamps(factory: Factory, column: str = "metadata_modified_at") -> dict[int, Any]:
    rows = await factory.pool.fetch(f"SELECT id, {column} AS at FROM posts ORDER BY id")
    return {r["id"]: r["at"] for r in rows}


async def test_every_bulk_write_bumps_metadata_modified_at_and_sets_updated_at(
    client: Client, factory: Factory
) -> None:
    user, ids = await factory.owner_and_bulk(3)
    cc = await factory.license("CC0-1.0")
    steps: list[tuple[str, dict[str, Any]]] = [
        ("action", {"action": "hide", "post_ids": ids[:1]}),
        ("action", {"action": "unhide", "post_ids": ids[:1]}),
        ("action", {"action": "delete", "post_ids": ids[1:2]}),
        ("action", {"action": "restore", "post_ids": ids[1:2]}),
        ("license", {"post_ids": ids[2:], "license_id": cc}),
        ("license", {"post_ids": ids[2:], "license_id": None}),
    ]
    for path, body in steps:
        await factory.pool.execute(
            f"UPDATE posts SET metadata_modified_at = '{_LONG_AGO}', updated_at = NULL"
        )
        before = await factory.pool.fetchval("SELECT now()")
        resp = await client.post(f"/api/pmd/{path}", json=body, headers=user.auth)
        assert resp.status == 200, await resp.text()
        stamps = await _stamps(factory)
        moved = {i for i, at in stamps.items() if at >= before}
        assert moved == set(body["post_ids"]), (path, body)
        updated = {i: at for i, at in (await _stamps(factory, "updated_at")).items() if at}
        assert set(updated) == set(body["post_ids"]), (path, body)
        assert all(at >= before for at in updated.values())
    # A write that changes nothing moves nothing (the player has nothing new to fetch).
    await factory.pool.execute(f"UPDATE posts SET metadata_modified_at = '{_LONG_AGO}'")
    resp = await client.post(
        "/api/pmd/action", json={"action": "unhide", "post_ids": ids}, headers=user.auth
    )
    assert resp.status == 200
    assert {at.year for at in (await _stamps(factory)).values()} == {2001}


@pytest.mark.parametrize("identifier", ["CC-BY-ND-4.0", "CC-BY-NC-ND-4.0"])
async def test_a_nd_license_turns_remixable_off(
    client: Client, factory: Factory, identifier: str
) -> None:
    user, ids = await factory.owner_and_bulk(3)
    nd = await factory.license(identifier)
    by = await factory.license("CC-BY-4.0")
    await factory.pool.execute("UPDATE posts SET remixable = (id <> $1)", ids[2])
    resp = await client.post(
        "/api/pmd/license", json={"post_ids": ids[:2], "license_id": nd}, headers=user.auth
    )
    assert resp.status == 200, await resp.text()
    rows = await factory.pool.fetch("SELECT id, remixable FROM posts ORDER BY id")
    assert [r["remixable"] for r in rows] == [False, False, False]
    # Another license leaves the flag as it is: turning it back on is the artist's choice.
    resp = await client.post(
        "/api/pmd/license", json={"post_ids": ids, "license_id": by}, headers=user.auth
    )
    assert resp.status == 200
    assert [
        r["remixable"] for r in await factory.pool.fetch("SELECT remixable FROM posts ORDER BY id")
    ] == [False, False, False]

    # A post under the ND license but still remixable (written before the rule) is corrected
    # by relicensing it to the same license, and counted as changed.
    await factory.pool.execute(
        "UPDATE posts SET license_id = $1, remixable = true WHERE id = $2", nd, ids[0]
    )
    resp = await client.post(
        "/api/pmd/license", json={"post_ids": ids[:1], "license_id": nd}, headers=user.auth
    )
    assert (await resp.json())["changed_count"] == 1
    assert await factory.pool.fetchval("SELECT remixable FROM posts WHERE id = $1", ids[0]) is False


@pytest.fixture
async def cache_client(
    aiohttp_client: AiohttpClient, settings: Settings, redis_url: str, redis_clean: None, pool: Any
) -> Client:
    return await aiohttp_client(create_app(replace(settings, host_cache_redis_url=redis_url)))


async def test_a_license_or_tag_change_drops_the_hosts_cached_feeds_and_tags(
    cache_client: Client, factory: Factory, redis_url: str
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    cc = await factory.license("CC0-1.0")
    cache = create_host_cache(redis_url)
    drops: FeedDrops | None = cache_client.app[FEED_DROPS]
    assert drops is not None

    async def idle() -> bool:
        return drops.idle

    steps: list[tuple[str, dict[str, Any]]] = [
        ("license", {"post_ids": ids, "license_id": cc}),
        ("action", {"action": "tags", "post_ids": ids, "add": ["new"]}),
        ("action", {"action": "remixable", "post_ids": ids, "value": False}),
    ]
    try:
        for path, body in steps:
            await cache.mset({"feed:recent:1": "x", "hashtags:top": "x", "user:1": "kept"})
            resp = await cache_client.post(f"/api/pmd/{path}", json=body, headers=user.auth)
            assert resp.status == 200

            async def dropped() -> bool:
                # The service's own keys (pmd:…) share this Redis in the tests.
                left = [k.decode() for k in await cache.keys("*") if not k.startswith(b"pmd:")]
                return left == ["user:1"]

            await eventually(dropped, what=f"the feeds dropped after {body}")
            await eventually(idle, what="the pass done")  # the next step's keys are its own
    finally:
        await cache.aclose()
