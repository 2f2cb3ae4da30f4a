"""POST /api/pmd/action and /api/pmd/license given bad input: a 4xx that says what to fix, and
nothing changed."""

from __future__ import annotations

import io
import json
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from support.seeding import Factory, posts_state
from tests.helpers import assert_problem

Client = TestClient[Any, Any]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"post_ids": [1]}, "action"),
        ({"action": "hide"}, "post_ids"),
        ({"action": "archive", "post_ids": [1]}, "action"),
        ({"action": "HIDE", "post_ids": [1]}, "action"),
        ({"action": 1, "post_ids": [1]}, "action"),
        ({"action": "hide", "post_ids": 1}, "post_ids"),
        ({"action": "hide", "post_ids": "1,2"}, "post_ids"),
        ({"action": "hide", "post_ids": [1.5]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [True]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [None]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [0]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [1, -5]}, "post_ids[1]"),
        ({"action": "hide", "post_ids": [2**31]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [10**30]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": []}, "post_ids"),
        ({"action": "hide", "post_ids": [1], "target_sqid": 5}, "target_sqid"),
        ({"action": "hide", "post_ids": [1], "target_sqid": "x" * 17}, "target_sqid"),
        ("hide", "body"),
        ([{"action": "hide", "post_ids": [1]}], "body"),
    ],
)
async def test_schema_violations_are_422_saying_what_to_fix(
    client: Client, factory: Factory, pool: asyncpg.Pool, payload: Any, field: str
) -> None:
    user = await factory.user()
    await factory.posts_bulk(user, 1)
    snapshot = await posts_state(pool)
    resp = await client.post("/api/pmd/action", json=payload, headers=user.auth)
    body = await assert_problem(resp, 422)
    assert body["errors"][0]["field"] == field
    assert field.split("[")[0] in body["detail"]
    assert await posts_state(pool) == snapshot


_VALID_BODIES = {
    "/api/pmd/action": b'{"action": "hide", "post_ids": [1]}',
    "/api/pmd/license": b'{"post_ids": [1], "license_id": null}',
}


@pytest.mark.parametrize("path", sorted(_VALID_BODIES))
@pytest.mark.parametrize(
    "mangle",
    [
        lambda body: b"not json",
        lambda body: body[:-1],  # truncated
        lambda body: body + b"garbage",
        lambda body: b"\x00\x01\x02",
        lambda body: body.replace(b"[1]", b"[1,]"),
        lambda body: b"   ",
    ],
    ids=["text", "truncated", "trailing", "binary", "trailing-comma", "blank"],
)
async def test_non_json_bodies_are_400(
    client: Client, factory: Factory, path: str, mangle: Any
) -> None:
    user = await factory.user()
    resp = await client.post(
        path,
        data=mangle(_VALID_BODIES[path]),
        headers={**user.auth, "Content-Type": "application/json"},
    )
    body = await assert_problem(resp, 400)
    assert "JSON" in body["detail"]


async def test_json_null_body_is_422(client: Client, factory: Factory) -> None:
    user = await factory.user()
    resp = await client.post(
        "/api/pmd/action",
        data=b"null",
        headers={**user.auth, "Content-Type": "application/json"},
    )
    body = await assert_problem(resp, 422)
    assert "object" in body["detail"]


async def test_ten_megabyte_body_is_413(client: Client, factory: Factory) -> None:
    user, ids = await factory.owner_and_bulk(1)
    padding = "x" * (10 * 1024 * 1024)
    for path in ("/api/pmd/action", "/api/pmd/license"):
        resp = await client.post(
            path,
            # File-like (Content-Length from its size): aiohttp warns about large raw bodies.
            data=io.BytesIO(
                json.dumps({"action": "hide", "post_ids": ids, "pad": padding}).encode()
            ),
            headers={**user.auth, "Content-Type": "application/json"},
        )
        body = await assert_problem(resp, 413)
        assert "limit" in body["detail"]
    assert (await factory.post_flags(ids))[ids[0]]["hidden_by_user"] is False


async def test_wrong_content_type_is_415(client: Client, factory: Factory) -> None:
    user = await factory.user()
    resp = await client.post(
        "/api/pmd/license",
        data='{"post_ids": [1], "license_id": null}',
        headers={**user.auth, "Content-Type": "text/plain"},
    )
    body = await assert_problem(resp, 415)
    assert "application/json" in body["detail"]


async def test_unauthenticated_action_changes_nothing(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    _, ids = await factory.owner_and_bulk(1)
    resp = await client.post("/api/pmd/action", json={"action": "delete", "post_ids": ids})
    await assert_problem(resp, 401)
    assert (await factory.post_flags(ids))[ids[0]]["deleted_by_user"] is False


# Dates whose instant falls outside the calendar once converted to UTC (year 0, year 10000).
OVERFLOWING_DATES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("when", OVERFLOWING_DATES)
@pytest.mark.parametrize("key", ["created_after", "created_before"])
async def test_a_date_out_of_range_in_utc_is_400_naming_it(
    client: Client, factory: Factory, pool: asyncpg.Pool, key: str, when: str
) -> None:
    user, ids = await factory.owner_and_bulk(1)
    snapshot = await posts_state(pool)
    resp = await client.get("/api/pmd/posts", params={key: when}, headers=user.auth)
    problem = await assert_problem(resp, 400)
    assert problem["errors"][0]["field"] == key and f"`{key}`" in problem["detail"]
    by_filter: dict[str, Any] = {"filter": {key: when}, "expect_count": 1}
    for path, body in (
        ("/api/pmd/action", {"action": "hide", **by_filter}),
        ("/api/pmd/license", {"license_id": None, **by_filter}),
    ):
        problem = await assert_problem(await client.post(path, json=body, headers=user.auth), 400)
        assert problem["errors"][0]["field"] == f"filter.{key}", problem
    assert await posts_state(pool) == snapshot
    assert (await factory.post_flags(ids))[ids[0]]["hidden_by_user"] is False


async def test_the_calendars_ends_in_utc_are_dates_like_any_other(
    client: Client, factory: Factory
) -> None:
    """The first and last instants a date names are accepted: only past them is refused."""
    user = await factory.user()
    await factory.posts_bulk(user, 2)
    for params, count in (
        ({"created_after": "0001-01-01T00:00:00Z", "created_before": "9999-12-31"}, 2),
        ({"created_after": "0001-01-01T01:00:00+01:00"}, 2),
        ({"created_before": "0001-01-01"}, 0),
        ({"created_after": "9999-12-31T23:59:59.999999Z"}, 0),
        ({"created_after": "9999-12-31T22:59:59-01:00"}, 0),
    ):
        resp = await client.get("/api/pmd/posts", params=params, headers=user.auth)
        assert resp.status == 200, (params, await resp.text())
        assert (await resp.json())["total_count"] == count, params
