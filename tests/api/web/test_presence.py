"""People on: a person's request marks it for every worker to read; probes, the page's files and
refused requests do not, and a Redis out of reach reads as people on."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from pmd_service.api.keys import PRESENCE, REDIS
from pmd_service.core.presence import KEY, WINDOW_SECONDS, people_on
from pmd_service.core.redis_client import create_redis
from support.seeding import Factory
from support.stack import free_port

Client = TestClient[Any, Any]


async def test_a_persons_request_marks_people_on_and_nothing_else_does(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    redis, marks = client.app[REDIS], client.app[PRESENCE]
    await redis.delete(KEY)
    others = ("/healthz", "/readyz", "/api/pmd/posts", "/static/pmd/app.js", "/nowhere")
    assert [(await client.get(path)).status for path in others] == [200, 200, 401, 200, 404]
    await marks.close()
    assert not await people_on(redis)
    assert (await client.get("/api/pmd/posts", headers=user.auth)).status == 200
    await marks.close()
    assert await people_on(redis)
    assert 0 < await redis.pttl(KEY) <= WINDOW_SECONDS * 1000


async def test_people_are_taken_as_on_when_redis_is_out_of_reach() -> None:
    unreachable = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert await people_on(unreachable)
    finally:
        await unreachable.aclose()
