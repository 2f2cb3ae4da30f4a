"""GET /api/pmd/posts in each order (`sort`, `order`) and with the engagement filters, against
real PostgreSQL: every order walked page by page through ties, cursors bound to their order
and the engagement filters in an action by filter (bad values: tests/api/test_posts_list.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient

from pmd_service.posts.sorting import SORTS
from support.seeding import Factory, UserRow
from tests.helpers import assert_problem

Client = TestClient[Any, Any]

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# title, days after T0, reactions, visible comments (+ hidden ones), views, tags: ties in every
# key, titles differing only in case among them.
POSTS = [
    ("Cat", 0, 2, 1, 10, ["wip"]),
    ("apple", 1, 0, 0, 10, []),
    ("cat", 1, 2, 3, 5, ["wip"]),
    ("Banana", 2, 1, 1, 0, ["wip"]),
    ("banana", 2, 0, 0, 7, []),
    ("Zebra", 3, 5, 1, 10, ["wip"]),
    ("apple", 4, 1, 0, 7, ["wip"]),
]
HIDDEN_COMMENTS = 2  # on every post: never counted


@pytest.fixture
async def library(factory: Factory) -> tuple[UserRow, list[dict[str, Any]]]:
    """One artist's posts with their keys, among another's posts and a deleted one."""
    user = await factory.user()
    fan = await factory.user()
    other = await factory.user()
    made: list[dict[str, Any]] = []
    for title, days, reactions, comments, views, tags in POSTS:
        at = T0 + timedelta(days=days)
        post = await factory.post(
            user, title=title, created_at=at, view_count=views, hashtags=tags, data=None
        )
        for n in range(reactions):
            await factory.reaction(post, fan, ["❤️", "🔥", "👍", "✨", "😂"][n])
        for _ in range(comments):
            await factory.comment(post, fan, "Nice")
        await factory.comment(post, fan, "hidden", hidden_by_mod=True)
        await factory.comment(post, fan, "gone", deleted_by_owner=True)
        made.append({"id": post.id, "title": title, "created_at": at, "reaction_count":
                     reactions, "comment_count": comments, "view_count": views, "tags": tags})  # fmt: skip
    await factory.post(other, title="Aardvark", view_count=999, data=None)
    await factory.post(user, title="Aaa", deleted_by_user=True, data=None,
                       deleted_by_user_date=datetime.now(UTC))  # fmt: skip
    return user, made


def _expected(posts: list[dict[str, Any]], sort: str, desc: bool) -> list[int]:
    def key(p: dict[str, Any]) -> tuple[Any, int]:
        return (p["title"].lower() if sort == "title" else p[sort], p["id"])

    return [p["id"] for p in sorted(posts, key=key, reverse=desc)]


async def _walk(client: Client, user: UserRow, **query: Any) -> list[int]:
    """Every listed id in order, two a page; the total holds on each page."""
    ids: list[int] = []
    cursor = None
    while True:
        params = [*query.items(), ("limit", "2")] + ([("cursor", cursor)] if cursor else [])
        resp = await client.get(f"/api/pmd/posts?{urlencode(params)}", headers=user.auth)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        ids += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            assert body["total_count"] == len(ids)
            return ids


async def test_each_sort_in_both_orders_walks_every_post_once(
    client: Client, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, posts = library
    for sort in SORTS:
        for order in ("asc", "desc"):
            got = await _walk(client, user, sort=sort, order=order)
            assert got == _expected(posts, sort, order == "desc"), (sort, order)
    # The defaults: newest first; a title A to Z.
    assert await _walk(client, user) == _expected(posts, "created_at", True)
    assert await _walk(client, user, sort="title") == _expected(posts, "title", False)


async def test_a_sort_with_a_filter(
    client: Client, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, posts = library
    wip = [p for p in posts if "wip" in p["tags"]]
    for sort in ("reaction_count", "view_count", "title"):
        got = await _walk(client, user, sort=sort, order="desc", hashtag="wip")
        assert got == _expected(wip, sort, True), sort


async def test_the_deleted_listing_sorts_too(
    client: Client, factory: Factory, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, _ = library
    late = await factory.post(user, title="Zz", deleted_by_user=True, data=None,
                              deleted_by_user_date=datetime.now(UTC))  # fmt: skip
    ids = await _walk(client, user, deleted="true", sort="title", order="desc")
    assert ids[0] == late.id and len(ids) == 2


async def test_a_cursor_is_bound_to_its_sort_and_order(
    client: Client, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, _ = library

    async def cursor(**query: str) -> str:
        resp = await client.get(
            f"/api/pmd/posts?{urlencode({**query, 'limit': '2'})}", headers=user.auth
        )
        token: str = (await resp.json())["next_cursor"]
        return token

    made = {
        "default": await cursor(),
        "views": await cursor(sort="view_count"),
        "views up": await cursor(sort="view_count", order="asc"),
        "title": await cursor(sort="title"),
    }
    for name, token in made.items():
        for query in ({}, {"sort": "view_count"}, {"sort": "view_count", "order": "asc"},
                      {"sort": "title"}, {"order": "asc"}):  # fmt: skip
            same = {"default": {}, "views": {"sort": "view_count"},
                    "views up": {"sort": "view_count", "order": "asc"},
                    "title": {"sort": "title"}}[name] == query  # fmt: skip
            resp = await client.get(
                f"/api/pmd/posts?{urlencode({**query, 'cursor': token})}", headers=user.auth
            )
            if same:
                assert resp.status == 200, (name, query, await resp.text())
                continue
            body = await assert_problem(resp, 400)
            assert body["errors"] == [
                {"field": "cursor", "message": "made under another sort or order"}
            ], (name, query)


async def test_engagement_filters_in_the_listing(
    client: Client, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, posts = library

    def having(**least: int) -> list[int]:
        return _expected([p for p in posts if all(p[k] >= n for k, n in least.items())],
                         "created_at", True)  # fmt: skip

    assert await _walk(client, user, min_reactions=2) == having(reaction_count=2)
    # Only visible comments count: every post has two others.
    assert await _walk(client, user, min_comments=1) == having(comment_count=1)
    assert await _walk(client, user, min_comments=3) == having(comment_count=3)
    assert await _walk(client, user, min_views=7) == having(view_count=7)
    assert await _walk(client, user, min_views=0) == having()
    both = await _walk(client, user, min_reactions=1, min_views=10, sort="view_count")
    assert sorted(both) == sorted(having(reaction_count=1, view_count=10))


async def test_engagement_filters_in_an_action_by_filter(
    client: Client, factory: Factory, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, posts = library
    chosen = {p["id"] for p in posts if p["reaction_count"] >= 2 and p["comment_count"] >= 1}
    keys = {"min_reactions": 2, "min_comments": 1}
    listed = await client.get(f"/api/pmd/posts?{urlencode(keys)}", headers=user.auth)
    page = await listed.json()
    assert page["total_count"] == len(chosen) == 3
    body = {"action": "hide", "filter": keys, "expect_count": len(chosen),
            "expect_digest": page["match_digest"]}  # fmt: skip
    resp = await client.post("/api/pmd/action", json=body, headers=user.auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["changed_count"] == len(chosen)
    flags = await factory.post_flags([p["id"] for p in posts])
    assert {i for i, f in flags.items() if f["hidden_by_user"]} == chosen
    # An engagement filter counts at run time: a count the person did not approve is a 409.
    resp = await client.post(
        "/api/pmd/action",
        json={"action": "unhide", "filter": {"min_views": 10}, "expect_count": 2},
        headers=user.auth,
    )
    assert (await assert_problem(resp, 409))["count"] == 3
