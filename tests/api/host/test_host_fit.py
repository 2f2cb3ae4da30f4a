"""What running beside the host site asks of the service, checked the way the host's own page
and tokens use it: messages and counts, the reply before the stream, moderator deletes, the
host's cached feeds, its tokens, CORS, and a moderator's download URL."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core.settings import Settings
from pmd_service.features.posts.endpoints import FEED_DROPS
from pmd_service.features.posts.host_cache import FeedDrops, create_host_cache
from pmd_service.web.app import create_app
from support.seeding import Factory
from support.sse import SSE, open_stream
from tests.helpers import (
    SECRET,
    act,
    announced,
    assert_problem,
    eventually,
    fetch_item,
    ok,
    request_bdr,
    run_worker,
)

Client = TestClient[Any, Any]


# --- the reply to POST /bdr comes before the stream hears of the request ----------------------


def _host_page_cards(log: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The download cards of the host's page (web/src/pages/u/[sqid]/posts.tsx) after `log`:
    a POST reply is prepended as is; a stream update replaces the first card with its id, or is
    prepended when there is none."""
    cards: list[dict[str, Any]] = []
    for source, item in log:
        index = next((i for i, c in enumerate(cards) if c["id"] == item["id"]), None)
        if source == "reply" or index is None:
            cards.insert(0, item)
        else:
            cards[index] = item
    return cards


async def test_the_reply_reaches_the_page_before_the_stream_does(
    client: Client, factory: Factory, settings: Settings
) -> None:
    user, posts = await factory.owner_and_posts(2)
    log: list[tuple[str, dict[str, Any]]] = []
    async with (
        aiohttp.ClientSession() as http,
        open_stream(http, str(client.make_url(SSE)), headers=user.auth) as stream,
    ):
        await stream.opening()

        async def listen() -> None:
            while (msg := await stream.next(within=30)) is not None:
                if msg.event == "bdr_update":
                    log.append(("stream", msg.json()))

        listener = asyncio.create_task(listen())
        ids = []
        for _ in range(3):  # the host's page saw a stale second card 3 times in 3
            resp = await client.post(
                "/api/pmd/bdr", json={"post_ids": [p.id for p in posts]}, headers=user.auth
            )
            assert resp.status == 202
            item = await resp.json()
            log.append(("reply", item))
            ids.append(item["id"])
            await announced(client, item["id"])

            async def on_stream(bdr_id: str = item["id"]) -> bool:
                return any(s == "stream" and i["id"] == bdr_id for s, i in log)

            await eventually(on_stream, 10, "the request reached the stream")
        await run_worker(settings)

        async def all_ready() -> bool:
            return sum(1 for s, i in log if s == "stream" and i["status"] == "ready") >= 3

        await eventually(all_ready, 10, lambda: f"three ready on the stream: {log}")
        listener.cancel()

    for bdr_id in ids:
        order = [s for s, i in log if i["id"] == bdr_id]
        assert order[0] == "reply", order  # the reply first, then its stream events
        assert order.count("reply") == 1
    cards = _host_page_cards(log)
    assert sorted(c["id"] for c in cards) == sorted(ids)  # one card each, no stale duplicate
    assert {c["status"] for c in cards} == {"ready"}


async def test_an_unannounced_request_is_announced_by_the_sweep(
    factory: Factory, worker_ctx: dict[str, Any], redis_clean: None
) -> None:
    """A server that stopped between its commit and its announcement leaves nothing stranded."""
    from pmd_service.upkeep.sweep import sweep

    user = await factory.user()
    post = await factory.post(user)
    bdr_id = await factory.pool.fetchval(
        """INSERT INTO batch_download_requests (user_id, post_ids, artwork_count, announced,
                                                created_at)
           VALUES ($1, $2, 1, false, now() - interval '1 minute') RETURNING id""",
        user.id,
        [post.id],
    )
    assert await factory.pool.fetchval("SELECT count(*) FROM stream_events") == 0
    summary = await sweep(worker_ctx)
    assert summary["requeued"] == 1
    assert await factory.pool.fetchval(
        "SELECT announced FROM batch_download_requests WHERE id = $1", bdr_id
    )
    assert (
        await factory.pool.fetchval(
            "SELECT count(*) FROM stream_events WHERE subject_id = $1", bdr_id
        )
        == 1
    )


# --- moderation --------------------------------------------------------------------------------


async def test_a_moderators_delete_is_not_the_owners_to_undo(
    client: Client, factory: Factory
) -> None:
    mod, owner, ids = await factory.caller_and_posts(3, roles=["user", "moderator"])

    await ok(client, mod, "delete", ids[:2], target_sqid=owner.sqid)
    await ok(client, owner, "delete", ids[2:])

    # The owner may restore their own delete, not the moderator's; nothing changes on refusal.
    resp = await act(client, owner, "restore", ids)
    body = await assert_problem(resp, 400)
    assert "moderator" in body["detail"]
    assert sorted(body["invalid_post_ids"]) == ids[:2]
    assert all(f["deleted_by_user"] for f in (await factory.post_flags(ids)).values())
    # Someone else learns nothing about these posts from a refusal.
    stranger = await factory.user()
    body = await assert_problem(await act(client, stranger, "restore", ids[:2]), 400)
    assert "moderator" not in body["detail"]
    await ok(client, owner, "restore", ids[2:])

    # A moderator's restore clears the mark; the owner's own delete/restore works again after.
    await ok(client, mod, "restore", ids[:1], target_sqid=owner.sqid)
    await ok(client, owner, "delete", ids[:1])
    await ok(client, owner, "restore", ids[:1])
    assert await factory.pool.fetchval("SELECT array_agg(post_id) FROM moderator_deletions") == [
        ids[1]
    ]

    audit = await factory.pool.fetch(
        "SELECT id, actor_id, action, target_id FROM audit_logs ORDER BY created_at"
    )
    assert [(a["actor_id"], a["action"]) for a in audit] == [
        (mod.id, "pmd_batch_delete"),
        (mod.id, "pmd_batch_restore"),
    ]
    assert all(isinstance(a["id"], uuid.UUID) and a["target_id"] == str(owner.id) for a in audit)


# --- the host's cached feeds ---------------------------------------------------------------


@pytest.fixture
async def cache_client(
    aiohttp_client: AiohttpClient, settings: Settings, redis_url: str, redis_clean: None, pool: Any
) -> Client:
    app = create_app(replace(settings, host_cache_redis_url=redis_url))
    return await aiohttp_client(app)


async def test_actions_drop_the_hosts_cached_feeds(
    cache_client: Client, factory: Factory, redis_url: str
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    cache = create_host_cache(redis_url)
    drops: FeedDrops | None = cache_client.app[FEED_DROPS]
    assert drops is not None

    async def idle() -> bool:
        return drops.idle

    try:
        for action in ("hide", "unhide", "delete", "restore"):
            # More keys than one SCAN step or one UNLINK batch holds.
            async with cache.pipeline(transaction=False) as pipe:
                for n in range(700):
                    pipe.set(f"feed:recent:{n}", "x")
                for key in ("feed:promoted:all", "hashtags:top"):
                    pipe.set(key, "x")
                for key in ("user:42:profile", "feedback:1"):
                    pipe.set(key, "kept")
                await pipe.execute()
            await ok(cache_client, user, action, ids)

            async def dropped() -> bool:
                # The service's own keys (pmd:…) share this Redis in the tests.
                keys = await cache.keys("*")
                left = sorted(k.decode() for k in keys if not k.startswith(b"pmd:"))
                return left == ["feedback:1", "user:42:profile"]

            await eventually(dropped, what=f"the feeds dropped after {action}")
            await eventually(idle, what="the pass done")  # the next step's keys are its own
        # A batch that changes nothing leaves the feeds alone: no pass is asked for.
        passes = drops.passes
        await cache.set("feed:recent:0", "x")
        await ok(cache_client, user, "unhide", ids)
        assert drops.idle and drops.passes == passes
        assert await cache.exists("feed:recent:0")
    finally:
        await cache.aclose()


async def test_an_unreachable_cache_never_fails_the_action(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    factory: Factory,
    redis_clean: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await aiohttp_client(
        create_app(replace(settings, host_cache_redis_url="redis://127.0.0.1:1/0"))
    )
    user, ids = await factory.owner_and_bulk(2)
    body = await ok(client, user, "hide", ids)
    assert body["affected_count"] == 2
    assert all(f["hidden_by_user"] for f in (await factory.post_flags(ids)).values())

    async def logged() -> bool:
        return "cached feeds" in caplog.text

    await eventually(logged, what="the failed pass logged")


# --- the host's tokens -----------------------------------------------------------------------


def _host_token(user_key: uuid.UUID | None, sub: str | None, **claims: Any) -> str:
    """A token shaped as the host's create_access_token mints it (api/app/auth.py)."""
    now = int(time.time())
    payload: dict[str, Any] = {"iat": now, "exp": now + 900, "type": "access", "roles": ["user"]}
    if user_key is not None:
        payload["user_id"] = str(user_key)
    if sub is not None:
        payload["sub"] = sub
    payload.update(claims)
    return jwt.encode(payload, SECRET, algorithm="HS256")


async def _status(client: Client, token: str) -> int:
    resp = await client.get("/api/pmd/posts", headers={"Authorization": f"Bearer {token}"})
    return resp.status


async def test_every_token_the_host_accepts(client: Client, factory: Factory) -> None:
    user = await factory.user()
    key = await factory.pool.fetchval("SELECT user_key FROM users WHERE id = $1", user.id)
    now = int(time.time())
    accepted = {
        "current": _host_token(key, user.sqid),
        "legacy user_id only": _host_token(key, None),
        "sub only": _host_token(None, user.sqid),
        "iat 2 s ahead": _host_token(key, user.sqid, iat=now + 2),
        "expired 10 s ago": _host_token(key, user.sqid, exp=now - 10),
        "sub unknown, user_id known": _host_token(key, "nobody"),
    }
    # Tokens minted before `type` existed (and this service's own dev tokens) carry none.
    accepted["no type"] = jwt.encode({"sub": user.sqid, "exp": now + 60}, SECRET, algorithm="HS256")
    for name, token in accepted.items():
        assert await _status(client, token) == 200, name
    refused = {
        "refresh": _host_token(key, user.sqid, type="refresh"),
        "expired 40 s ago": _host_token(key, user.sqid, exp=now - 40),
        "iat 60 s ahead": _host_token(key, user.sqid, iat=now + 60),
        "no subject": _host_token(None, None),
        "user_id not a key": _host_token(None, None, user_id="12"),
        "unknown user_key": _host_token(uuid.uuid4(), None),
    }
    for name, token in refused.items():
        resp = await client.get("/api/pmd/posts", headers={"Authorization": f"Bearer {token}"})
        body = await assert_problem(resp, 401)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer"), name
        assert body["detail"], name


async def test_leeway_is_configurable(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, jwt_leeway_seconds=0)))
    user = await factory.user()
    assert await _status(client, _host_token(None, user.sqid, exp=int(time.time()) - 2)) == 401


# --- CORS --------------------------------------------------------------------------------------

PAGE_ORIGIN = "https://makapix.club"


@pytest.fixture
async def cors_client(
    aiohttp_client: AiohttpClient, settings: Settings, redis_clean: None, pool: Any
) -> Client:
    return await aiohttp_client(create_app(replace(settings, cors_origins=(PAGE_ORIGIN,))))


async def test_cors_preflight_and_answers(cors_client: Client, factory: Factory) -> None:
    user = await factory.user()
    preflight = await cors_client.options(
        "/api/pmd/bdr",
        headers={
            "Origin": PAGE_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status == 200, await preflight.text()
    assert preflight.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed

    ok = await cors_client.get("/api/pmd/posts", headers={**user.auth, "Origin": PAGE_ORIGIN})
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
    assert "X-Request-ID" in ok.headers["Access-Control-Expose-Headers"]
    # A problem answer carries the headers too, so the page can read its detail.
    denied = await cors_client.get("/api/pmd/posts", headers={"Origin": PAGE_ORIGIN})
    await assert_problem(denied, 401)
    assert denied.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN

    # Another origin gets no CORS headers (the browser then blocks the read).
    other = await cors_client.get(
        "/api/pmd/posts", headers={**user.auth, "Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    refused = await cors_client.options(
        "/api/pmd/posts",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert refused.status == 403
    assert "Access-Control-Allow-Origin" not in refused.headers


async def test_without_cors_origins_there_is_no_cors(client: Client) -> None:
    resp = await client.options(
        "/api/pmd/posts",
        headers={"Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    await assert_problem(resp, 405)
    assert "Access-Control-Allow-Origin" not in resp.headers


# --- a moderator's download ------------------------------------------------------------------


async def test_a_moderators_download_url_works_as_given(
    client: Client, factory: Factory, settings: Settings, pool: asyncpg.Pool
) -> None:
    mod = await factory.user(roles=["user", "moderator"])
    owner = await factory.user()
    post = await factory.post(owner)
    item = await request_bdr(client, mod, [post.id], target_sqid=owner.sqid)
    await run_worker(settings)

    mod_view = await (
        await client.get(f"/api/pmd/bdr/{item['id']}?target_sqid={owner.sqid}", headers=mod.auth)
    ).json()
    owner_view = await fetch_item(client, owner, item["id"])
    # One URL, as the host's page uses it (`${API_BASE_URL}${download_url}`), for both callers.
    assert mod_view["download_url"] == owner_view["download_url"]
    for user in (mod, owner):
        resp = await client.get(mod_view["download_url"], headers=user.auth)
        assert resp.status == 200, await resp.text()
        assert (await resp.read())[:2] == b"PK"

    resp = await client.delete(
        f"/api/pmd/bdr/{item['id']}?target_sqid={owner.sqid}", headers=mod.auth
    )
    assert resp.status == 204
    audit = await pool.fetch("SELECT actor_id, action, note FROM audit_logs ORDER BY created_at")
    assert [(a["actor_id"], a["action"]) for a in audit] == [
        (mod.id, "pmd_batch_download"),
        (mod.id, "pmd_bdr_download"),
        (mod.id, "pmd_bdr_delete"),
    ]
    assert all(item["id"] in a["note"] for a in audit)
