"""The downloads list answers the day's limit and what the caller spent of it, so a page opened
after the limit was reached knows it before a refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from pmd_service.core.settings import Settings
from support.seeding import Factory, UserRow
from tests.helpers import assert_problem, request_bdr

Client = TestClient[Any, Any]


async def _day(client: Client, user: UserRow, **query: str) -> dict[str, Any]:
    resp = await client.get("/api/pmd/bdr", params=query, headers=user.auth)
    assert resp.status == 200, await resp.text()
    day: dict[str, Any] = (await resp.json())["daily_limit"]
    return day


async def test_the_list_says_the_days_limit_and_what_the_caller_used(
    client: Client, factory: Factory, settings: Settings
) -> None:
    user, [post] = await factory.owner_and_posts(1)
    size = await factory.pool.fetchval(
        "SELECT file_bytes FROM post_files WHERE post_id = $1 AND is_native", post.id
    )
    day = await _day(client, user)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    assert datetime.fromisoformat(day.pop("resets_at")) == datetime(
        tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC
    )
    assert day == {
        "limit": settings.bdr_daily_limit,
        "used": 0,
        "limit_bytes": settings.bdr_daily_bytes,
        "used_bytes": 0,
    }

    for _ in range(settings.bdr_daily_limit):
        await request_bdr(client, user, [post.id], include_layers=False)
    day = await _day(client, user)
    assert (day["used"], day["used_bytes"]) == (settings.bdr_daily_limit, size * day["used"])
    # What a fresh page reads as used up is what the server refuses.
    refused = await client.post("/api/pmd/bdr", json={"post_ids": [post.id]}, headers=user.auth)
    await assert_problem(refused, 429, "bdr_daily_limit")

    # Yesterday's requests count no more.
    await factory.pool.execute(
        "UPDATE batch_download_requests SET created_at = now() - interval '1 day'"
        " WHERE user_id = $1",
        user.id,
    )
    assert (await _day(client, user))["used"] == 0


async def test_a_moderator_reads_their_own_spending_on_an_artists_list(
    client: Client, factory: Factory
) -> None:
    user, [post] = await factory.owner_and_posts(1)
    mod = await factory.user(roles=["moderator"])
    await request_bdr(client, mod, [post.id], target_sqid=user.sqid)
    await request_bdr(client, user, [post.id])
    await request_bdr(client, user, [post.id])
    assert (await _day(client, mod, target_sqid=user.sqid))["used"] == 1
    assert (await _day(client, user))["used"] == 2


async def test_the_document_describes_the_days_limit(client: Client) -> None:
    doc = await (await client.get("/openapi.json")).json()
    answer = doc["paths"]["/api/pmd/bdr"]["get"]["responses"]["200"]
    ref = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    listed = doc["components"]["schemas"][ref]
    assert "daily_limit" in listed["required"]
    limit_ref = listed["properties"]["daily_limit"]
    name = (limit_ref.get("$ref") or limit_ref["allOf"][0]["$ref"]).rsplit("/", 1)[-1]
    day = doc["components"]["schemas"][name]
    assert set(day["required"]) == {"limit", "used", "limit_bytes", "used_bytes", "resets_at"}
    assert day["properties"]["resets_at"]["format"] == "date-time"
