"""GET /api/pmd/posts in each order (`sort`, `order`) and with the engagement filters, against
real PostgreSQL: every order walked page by page through ties, cursors bound to their order
and the engagement filters in an action by filter (bad values: tests/api/posts/test_posts_list.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient

from pmd_service.features.posts.sorting import SORTS
from support.seeding import Factory, UserRow
from tests.helpers import assert_problem

Client = TestClient[Any, Any]

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# title, days after T0, reactions, visible comments, hidden ones (never counted), views, tags,
# the native file's bytes (None: no native file) and format, license, remixable, hidden (0: no,
# 1: by the artist, 2: by a moderator): ties in every key, titles differing only in case among
# them. Counted with the hidden ones, the comments would give another order and other matches.
POSTS = [
    ("Cat", 0, 2, 1, 0, 10, ["wip"], 300, "png", "CC-BY-4.0", True, 0),
    ("apple", 1, 0, 0, 4, 10, [], 100, "gif", None, True, 1),
    ("cat", 1, 2, 3, 0, 5, ["wip"], None, None, "MIT", False, 2),
    ("Banana", 2, 1, 1, 2, 0, ["wip"], 300, "gif", "CC-BY-4.0", True, 0),
    ("banana", 2, 0, 0, 5, 7, [], 100, "png", None, False, 1),
    ("Zebra", 3, 5, 1, 1, 10, ["wip"], 0, "webp", "MIT", True, 0),
    ("apple", 4, 1, 0, 3, 7, ["wip"], 300, "png", "CC-BY-4.0", False, 2),
]
# Each way a comment is not shown, in turn.
UNSHOWN = ({"hidden_by_mod": True}, {"deleted_by_owner": True}, {"deleted_by_mod": True})


@pytest.fixture
async def library(factory: Factory) -> tuple[UserRow, list[dict[str, Any]]]:
    """One artist's posts with their keys, among another's posts and a deleted one."""
    user = await factory.user()
    fan = await factory.user()
    other = await factory.user()
    licenses = {name: await factory.license(name) for name in ("CC-BY-4.0", "MIT")}
    made: list[dict[str, Any]] = []
    for (
        title,
        days,
        reactions,
        comments,
        unshown,
        views,
        tags,
        size,
        fmt,
        license,
        remix,
        hidden,
    ) in POSTS:
        at = T0 + timedelta(days=days)
        post = await factory.post(
            user,
            title=title,
            created_at=at,
            view_count=views,
            hashtags=tags,
            data=None,
            fmt=fmt or "png",
            license_id=license and licenses[license],
            remixable=remix,
            hidden_by_user=hidden == 1,
            hidden_by_mod=hidden == 2,
        )
        # Another file beside the native one, which never decides the order.
        await factory.row(
            "post_files",
            "post_id",
            post_id=post.id,
            format="bmp",
            file_bytes=10**6,
            is_native=False,
        )
        await factory.pool.execute(
            "UPDATE post_files SET file_bytes = coalesce($2, 7), is_native = $3 WHERE post_id = $1"
            " AND format <> 'bmp'",
            post.id,
            size,
            size is not None,
        )
        for n in range(reactions):
            await factory.reaction(post, fan, ["❤️", "🔥", "👍", "✨", "😂"][n])
        for _ in range(comments):
            await factory.comment(post, fan, "Nice")
        for n in range(unshown):
            await factory.comment(post, fan, "not shown", **UNSHOWN[n % len(UNSHOWN)])
        made.append(
            {
                "id": post.id,
                "title": title,
                "created_at": at,
                "reaction_count": reactions,
                "comment_count": comments,
                "view_count": views,
                "tags": tags,
                "file_bytes": -1 if size is None else size,
                "format": fmt or "",
                "license": license or "",
                "remixable": remix,
                "hidden": hidden,
            }
        )
    await factory.post(other, title="Aardvark", view_count=999, data=None)
    await factory.post(
        user, title="Aaa", deleted_by_user=True, data=None, deleted_by_user_date=datetime.now(UTC)
    )
    return user, made


def natural(title: str) -> str:
    """A title's place in the natural order: runs of digits compare as numbers."""
    parts = re.split(r"([0-9]+)", title.lower())
    return "".join(
        f"{len(p.lstrip('0')):03d}{p.lstrip('0')}" if i % 2 else p for i, p in enumerate(parts)
    )


def _expected(posts: list[dict[str, Any]], sort: str, desc: bool) -> list[int]:
    def key(p: dict[str, Any]) -> tuple[Any, int]:
        return (natural(p["title"]) if sort == "title" else p[sort], p["id"])

    return [p["id"] for p in sorted(posts, key=key, reverse=desc)]


async def _walk(
    client: Client, user: UserRow, count: int, limit: int = 2, **query: Any
) -> list[int]:
    """Every listed id in order, `limit` a page, in no more pages than `count` posts fill (one
    when none); the total holds on the last page."""
    pages = max(1, -(-count // limit))
    ids: list[int] = []
    cursor = None
    for _ in range(pages):
        params = [*query.items(), ("limit", str(limit))] + ([("cursor", cursor)] if cursor else [])
        resp = await client.get(f"/api/pmd/posts?{urlencode(params)}", headers=user.auth)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        ids += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            assert body["total_count"] == len(ids)
            return ids
    raise AssertionError(f"{query}: still a next cursor after the {pages} pages of {count} posts")


async def test_each_sort_in_both_orders_walks_every_post_once(
    client: Client, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, posts = library
    for sort in SORTS:
        for order in ("asc", "desc"):
            got = await _walk(client, user, len(posts), sort=sort, order=order)
            assert got == _expected(posts, sort, order == "desc"), (sort, order)
    # The defaults: newest first; a title, a license or a format A to Z.
    assert await _walk(client, user, len(posts)) == _expected(posts, "created_at", True)
    for sort in ("title", "license", "format"):
        got = await _walk(client, user, len(posts), sort=sort)
        assert got == _expected(posts, sort, False), sort


async def test_a_sort_with_a_filter(
    client: Client, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, posts = library
    wip = [p for p in posts if "wip" in p["tags"]]
    for sort in ("reaction_count", "view_count", "title", "file_bytes", "license", "hidden"):
        got = await _walk(client, user, len(wip), sort=sort, order="desc", hashtag="wip")
        assert got == _expected(wip, sort, True), sort


async def test_the_deleted_listing_sorts_too(
    client: Client, factory: Factory, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, _ = library
    late = await factory.post(
        user, title="Zz", deleted_by_user=True, data=None, deleted_by_user_date=datetime.now(UTC)
    )
    ids = await _walk(client, user, 2, deleted="true", sort="title", order="desc")
    assert ids[0] == late.id and len(ids) == 2


async def _listing(client: Client, user: UserRow, query: dict[str, str], **more: str) -> Any:
    """The listing's answer to `query` and `more`, the cursor tests' one request."""
    return await client.get(f"/api/pmd/posts?{urlencode({**query, **more})}", headers=user.auth)


async def _first_cursor(client: Client, user: UserRow, query: dict[str, str]) -> str:
    """The cursor after the first page of two under `query`."""
    token: str = (await (await _listing(client, user, query, limit="2")).json())["next_cursor"]
    return token


async def _refused_cursor(resp: Any, context: Any) -> None:
    """`resp` refuses a cursor made under another sort or order."""
    body = await assert_problem(resp, 400)
    refusal = [{"field": "cursor", "message": "made under another sort or order"}]
    assert body["errors"] == refusal, context


async def test_a_cursor_is_bound_to_its_sort_and_order(
    client: Client, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, _ = library
    sorts: dict[str, dict[str, str]] = {
        "default": {},
        "views": {"sort": "view_count"},
        "views up": {"sort": "view_count", "order": "asc"},
        "title": {"sort": "title"},
    }
    made = {name: await _first_cursor(client, user, query) for name, query in sorts.items()}
    for name, token in made.items():
        for query in (*sorts.values(), {"order": "asc"}):
            resp = await _listing(client, user, query, cursor=token)
            if sorts[name] == query:
                assert resp.status == 200, (name, query, await resp.text())
                continue
            await _refused_cursor(resp, (name, query))


async def test_engagement_filters_in_the_listing(
    client: Client, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, posts = library

    def having(**least: int) -> list[int]:
        return _expected(
            [p for p in posts if all(p[k] >= n for k, n in least.items())], "created_at", True
        )

    for query, want in (
        ({"min_reactions": 2}, having(reaction_count=2)),
        # Only visible comments count: with the others, every post has one.
        ({"min_comments": 1}, having(comment_count=1)),
        ({"min_comments": 3}, having(comment_count=3)),
        ({"min_views": 7}, having(view_count=7)),
        ({"min_views": 0}, having()),
    ):
        assert await _walk(client, user, len(want), **query) == want, query
    want = having(reaction_count=1, view_count=10)
    both = await _walk(client, user, len(want), min_reactions=1, min_views=10, sort="view_count")
    assert sorted(both) == sorted(want)


async def test_engagement_filters_in_an_action_by_filter(
    client: Client, factory: Factory, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, posts = library
    chosen = {p["id"] for p in posts if p["reaction_count"] >= 2 and p["comment_count"] >= 1}
    keys = {"min_reactions": 2, "min_comments": 1}
    listed = await client.get(f"/api/pmd/posts?{urlencode(keys)}", headers=user.auth)
    page = await listed.json()
    assert page["total_count"] == len(chosen) == 3
    body = {
        "action": "hide",
        "filter": keys,
        "expect_count": len(chosen),
        "expect_digest": page["match_digest"],
    }
    resp = await client.post("/api/pmd/action", json=body, headers=user.auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["changed_count"] == len(chosen)
    flags = await factory.post_flags([p["id"] for p in posts])
    already = {p["id"] for p in posts if p["hidden"] == 1}
    assert {i for i, f in flags.items() if f["hidden_by_user"]} == chosen | already
    # An engagement filter counts at run time: a count the person did not approve is a 409.
    resp = await client.post(
        "/api/pmd/action",
        json={"action": "unhide", "filter": {"min_views": 10}, "expect_count": 2},
        headers=user.auth,
    )
    assert (await assert_problem(resp, 409))["count"] == 3


# Titles whose order is the natural one, case-insensitive: numbers by value, leading zeros
# and case making equal keys (ids break the tie), a number longer than any integer type,
# non-ASCII letters, a title that is only a number, an empty one.
NATURAL = [
    "",
    "4",
    "#4",
    "#04",
    "#24",
    "#34",
    "#100",
    "Pixel 9",
    "pixel 10",
    "Pixel 10",
    "x" + "1" + "0" * 29,
    "x" + "9" * 29,
    "ÉLAN 2",
    "élan 10",
    "élan 10 b",
    "日本 3",
    "日本 12",
]


async def test_titles_sort_in_natural_order_through_every_cursor(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    posts = [{"id": (await factory.post(user, title=t, data=None)).id, "title": t} for t in NATURAL]
    walks = {}
    for order in ("asc", "desc"):
        # One post a page: each title's cursor makes the key of that title again.
        ids = await _walk(client, user, len(posts), limit=1, sort="title", order=order)
        assert ids == _expected(posts, "title", order == "desc"), order
        walks[order] = ids
    title = {p["id"]: p["title"] for p in posts}
    shown = [title[i] for i in walks["asc"]]
    assert shown.index("#4") < shown.index("#24") < shown.index("#34") < shown.index("#100")
    assert shown.index("Pixel 9") < shown.index("pixel 10")
    assert shown.index("ÉLAN 2") < shown.index("élan 10") < shown.index("élan 10 b")
    assert shown.index("x" + "9" * 29) < shown.index("x1" + "0" * 29)


async def test_a_cursor_of_a_new_sort_is_refused_by_every_other(
    client: Client, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, _ = library
    added = ("file_bytes", "license", "remixable", "hidden", "format")
    for sort in added:
        for order in ("asc", "desc"):
            query = {"sort": sort, "order": order}
            token = await _first_cursor(client, user, query)
            again = await _listing(client, user, query, cursor=token)
            assert again.status == 200, await again.text()
            flipped = {"sort": sort, "order": "asc" if order == "desc" else "desc"}
            for other in [flipped, *({"sort": s} for s in SORTS if s != sort)]:
                resp = await _listing(client, user, other, cursor=token)
                await _refused_cursor(resp, (query, other))


async def test_the_documented_sorts_are_the_served_ones(
    client: Client, library: tuple[UserRow, list[dict[str, Any]]]
) -> None:
    user, _ = library
    doc = await (await client.get("/openapi.json")).json()
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/pmd/posts"]["get"]["parameters"]}
    documented = params["sort"].get("enum") or next(
        s["enum"] for s in params["sort"].get("anyOf", []) if "enum" in s
    )
    assert documented == list(SORTS)
    for sort in documented:
        resp = await client.get(f"/api/pmd/posts?sort={sort}&limit=1", headers=user.auth)
        assert resp.status == 200, (sort, await resp.text())
    resp = await client.get("/api/pmd/posts?sort=size", headers=user.auth)
    await assert_problem(resp, 400)
