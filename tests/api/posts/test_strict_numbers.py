"""A number a client sends is plain ASCII digits (a '-' only where negatives make sense):
anything else int() would take is a 400 naming the parameter, in a query or a JSON body."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from support.seeding import Factory
from tests.helpers import assert_problem

Client = TestClient[Any, Any]

# Each of these int() accepts as 5 (or 1000).
_LENIENT = ["+5", "1_000", "\uff15", "\u0665", " 5", "5 ", "5\n", "05_0"]


@pytest.mark.parametrize("raw", _LENIENT)
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/pmd/posts", "limit"),
        ("/api/pmd/posts", "min_reactions"),
        ("/api/pmd/posts", "min_views"),
        ("/api/pmd/posts", "min_comments"),
        ("/api/pmd/actions", "limit"),
    ],
)
async def test_a_query_number_is_plain_ascii_digits(
    client: Client, factory: Factory, path: str, name: str, raw: str
) -> None:
    user = await factory.user()
    resp = await client.get(path, params={name: raw}, headers=user.auth)
    problem = await assert_problem(resp, 400)
    assert problem["errors"][0]["field"] == name
    # The same number in plain digits is taken.
    resp = await client.get(path, params={name: "5"}, headers=user.auth)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("raw", ["5.0", "1e1", '"5"', "true"])
async def test_a_json_number_is_an_integer(client: Client, factory: Factory, raw: str) -> None:
    user = await factory.user()
    body = f'{{"action": "hide", "filter": {{}}, "expect_count": {raw}}}'
    resp = await client.post(
        "/api/pmd/action",
        data=body,
        headers={**user.auth, "Content-Type": "application/json"},
    )
    problem = await assert_problem(resp, 422)
    assert problem["errors"][0]["field"] == "expect_count"
