"""A query parameter that takes one value, given twice, is a 400 naming it on every endpoint
with a query; the lists (`hashtag`) still repeat, and a key no endpoint reads is ignored."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pmd_service.core.codes import Code
from support.seeding import Factory
from tests.helpers import assert_problem

Client = TestClient[Any, Any]


@pytest.mark.parametrize(
    ("method", "path", "query", "key"),
    [
        ("GET", "/api/pmd/posts", "sort=created_at&sort=title", "sort"),
        ("GET", "/api/pmd/posts", "limit=1&limit=2", "limit"),
        ("GET", "/api/pmd/posts", "deleted=true&deleted=false", "deleted"),
        ("GET", "/api/pmd/posts", "hashtag=a&q=x&hashtag=b&q=x", "q"),
        ("GET", "/api/pmd/actions", "limit=5&cursor=a&limit=5", "limit"),
        ("GET", "/api/pmd/bdr/{id}/download", "target_sqid={me}&target_sqid={me}", "target_sqid"),
        ("GET", "/api/pmd/exports/{id}/parts/1/download", "ticket=a&ticket=b", "ticket"),
        ("GET", "/api/pmd/bdr/sse", "last_event_id=1&last_event_id=2", "last_event_id"),
        ("GET", "/api/pmd/bdr/sse", "ticket=a&ticket=a", "ticket"),
        ("POST", "/api/pmd/bdr/sse-ticket", "bdr_id={id}&bdr_id={id}", "bdr_id"),
        ("POST", "/api/pmd/bdr", "target_sqid={me}&target_sqid={me}", "target_sqid"),
    ],
)
async def test_a_one_value_parameter_given_twice_is_refused_naming_it(
    client: Client, factory: Factory, method: str, path: str, query: str, key: str
) -> None:
    user = await factory.user()
    post = await factory.post(user)
    ids = {"id": str(uuid.uuid4()), "me": user.sqid}
    url = f"{path}?{query}".format(**ids)
    body = {"post_ids": [post.id]} if method == "POST" else None
    resp = await client.request(method, url, headers=user.auth, json=body)
    problem = await assert_problem(resp, 400, Code.DUPLICATE_KEY)
    assert problem["details"]["key"] == key
    assert [e["field"] for e in problem["errors"]] == [key]


async def test_a_repeated_hashtag_still_filters_by_all_of_them(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    both = await factory.post(user, hashtags=["cats", "wip"])
    await factory.post(user, hashtags=["cats"])
    await factory.post(user, hashtags=["wip"])
    resp = await client.get("/api/pmd/posts?hashtag=cats&hashtag=wip&limit=10", headers=user.auth)
    assert resp.status == 200, await resp.text()
    assert [i["id"] for i in (await resp.json())["items"]] == [both.id]


async def test_a_repeated_key_no_endpoint_reads_is_ignored_like_any_unknown_key(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    post = await factory.post(user)
    resp = await client.get("/api/pmd/posts?_=1&_=2&limit=10", headers=user.auth)
    assert resp.status == 200, await resp.text()
    assert [i["id"] for i in (await resp.json())["items"]] == [post.id]
