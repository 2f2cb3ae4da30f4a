"""GET /api/pmd/posts with a filter, against real PostgreSQL on posts shaped as the host's
migrations make them: each key alone and combined, the deleted listing, totals, and cursors bound
to their filter (every bad value a 400 naming its parameter: tests/api/posts/test_posts_list.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.core.named_sql import Named
from pmd_service.features.posts import listing
from pmd_service.features.posts.filters import (
    EMPTY_DIGEST,
    FilterKeys,
    check_filter,
    given,
    predicate,
)
from pmd_service.features.posts.policies.sql import kept
from pmd_service.features.posts.sorting import default_sort
from support.seeding import Factory, UserRow
from tests.helpers import assert_problem, logging_pool

Client = TestClient[Any, Any]

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# What the connection running it keeps prepared.
SQL_PREPARED = "SELECT statement FROM pg_prepared_statements"


# Queries and the fixture's posts they list, newest first.
EACH_KEY: list[tuple[dict[str, Any], list[str]]] = [
    ({"q": "cat"}, ["dog", "cat"]),  # title or description, any case
    ({"q": "  LAZY "}, ["dog"]),
    ({"q": "100%"}, []),  # no pattern characters: a substring, as typed
    ({"hashtag": "cats"}, ["layers", "cat"]),
    ({"hashtag": "#WIP"}, ["wip", "cat"]),  # the site's normalisation
    ({"hashtag": ["cats", "wip"]}, ["cat"]),  # every one of them
    ({"license": "CC-BY-ND-4.0"}, ["noremix", "modhid"]),
    ({"license": "none"}, ["layers", "wip", "dog"]),
    ({"hidden": True}, ["modhid", "wip"]),  # by the user or a moderator
    ({"hidden": False}, ["layers", "noremix", "dog", "cat"]),
    ({"remixable": False}, ["noremix"]),
    ({"format": "GIF"}, ["layers"]),
    ({"has_layers": True}, ["layers"]),
    ({"has_layers": False}, ["noremix", "modhid", "wip", "dog", "cat"]),
    ({"created_after": "2024-05-05"}, ["layers", "noremix"]),  # on or after
    ({"created_before": "2024-05-02"}, ["cat"]),
    ({"created_before": "2024-05-02T12:00:00Z"}, ["cat"]),  # before, not at
    (
        {"created_after": "2024-05-02T12:00:00+00:00"},
        ["layers", "noremix", "modhid", "wip", "dog"],
    ),
]

COMBINED: list[tuple[dict[str, Any], list[str]]] = [
    ({"hashtag": "cats", "has_layers": False}, ["cat"]),
    ({"hashtag": "wip", "hidden": False, "q": "cat"}, ["cat"]),
    # Written before rule L5 (the fixture sets no remixable): the filter finds it.
    ({"license": "CC-BY-ND-4.0", "remixable": True}, ["modhid"]),
    (
        {"license": "none", "created_after": "2024-05-02", "created_before": "2024-05-06"},
        ["wip", "dog"],
    ),
    ({"format": "png", "hidden": True, "license": "none"}, ["wip"]),
]


async def _ids(client: Client, user: UserRow, **query: Any) -> list[int]:
    """Every matching id in listing order, walking the pages; checks the total on each."""
    pairs = _pairs(query)
    ids: list[int] = []
    cursor = None
    total = None
    while True:
        extra = [("limit", "2")] + ([("cursor", cursor)] if cursor else [])
        resp = await client.get(f"/api/pmd/posts?{urlencode(pairs + extra)}", headers=user.auth)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        ids += [i["id"] for i in body["items"]]
        assert total in (None, body["total_count"])
        total = body["total_count"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert total == len(ids), (query, total, ids)
    return ids


def _pairs(query: dict[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        for one in value if isinstance(value, list) else [value]:
            pairs.append((key, str(one).lower() if isinstance(one, bool) else str(one)))
    return pairs


@pytest.fixture
async def library(factory: Factory) -> tuple[UserRow, dict[str, int]]:
    """One artist's posts, each with what one filter key looks for, newest last."""
    user = await factory.user()
    other = await factory.user()
    by = await factory.license("CC-BY-4.0")
    nd = await factory.license("CC-BY-ND-4.0")
    made: dict[str, int] = {}
    rows: list[tuple[str, dict[str, Any]]] = [
        ("cat", {"title": "Black CAT", "hashtags": ["cats", "wip"], "license_id": by}),
        ("dog", {"title": "Dog", "description": "a lazy cat nearby", "hashtags": ["dogs"]}),
        ("wip", {"title": "Sketch", "hashtags": ["wip"], "hidden_by_user": True}),
        ("modhid", {"title": "Flagged", "hidden_by_mod": True, "license_id": nd}),
        ("noremix", {"title": "Mine", "remixable": False, "license_id": nd}),
        ("layers", {"title": "Layered", "mkpx_file_bytes": 2048, "hashtags": ["cats"]}),
    ]
    for n, (name, cols) in enumerate(rows):
        fmt = "gif" if name == "layers" else "png"
        post = await factory.post(
            user, created_at=T0 + timedelta(days=n), fmt=fmt, data=None, **cols
        )
        made[name] = post.id
    # Another user's matching post, and a playlist: never listed.
    await factory.post(other, title="cat", hashtags=["cats"], data=None)
    await factory.post(user, title="cat list", kind="playlist", hashtags=["cats"], data=None)
    return user, made


async def test_each_key_alone(client: Client, library: tuple[UserRow, dict[str, int]]) -> None:
    user, p = library
    assert await _ids(client, user) == [
        p["layers"],
        p["noremix"],
        p["modhid"],
        p["wip"],
        p["dog"],
        p["cat"],
    ]
    for query, names in EACH_KEY:
        assert await _ids(client, user, **query) == [p[n] for n in names], query


async def test_keys_combined(client: Client, library: tuple[UserRow, dict[str, int]]) -> None:
    user, p = library
    for query, names in COMBINED:
        assert await _ids(client, user, **query) == [p[n] for n in names], query


async def test_a_filtered_first_page_names_its_set(
    client: Client, library: tuple[UserRow, dict[str, int]]
) -> None:
    """Its total and digest are the matching set's, whatever the order; a filter that matches
    nothing answers an empty page and the empty set's digest."""
    user, _ = library

    async def first(query: str) -> dict[str, Any]:
        resp = await client.get(f"/api/pmd/posts?limit=1&{query}", headers=user.auth)
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    newest = await first("hashtag=cats")
    by_title = await first("hashtag=cats&sort=title")
    assert newest["total_count"] == by_title["total_count"] == 2
    assert newest["items"] != by_title["items"]
    assert newest["match_digest"] == by_title["match_digest"]
    assert newest["match_digest"] != (await first("hashtag=wip"))["match_digest"]
    none = await first("q=100%25")
    assert (none["items"], none["total_count"], none["next_cursor"]) == ([], 0, None)
    assert none["match_digest"] == EMPTY_DIGEST


async def test_the_deleted_listing_filters_too(
    client: Client, factory: Factory, library: tuple[UserRow, dict[str, int]]
) -> None:
    user, p = library
    resp = await client.post(
        "/api/pmd/action",
        json={"action": "delete", "post_ids": [p["cat"], p["dog"], p["wip"]]},
        headers=user.auth,
    )
    assert resp.status == 200
    assert await _ids(client, user, deleted="true", hashtag="wip") == [p["wip"], p["cat"]]
    assert await _ids(client, user, deleted="true", q="dog") == [p["dog"]]
    assert await _ids(client, user, hashtag="wip") == []


async def test_a_cursor_is_bound_to_its_filter(
    client: Client, factory: Factory, library: tuple[UserRow, dict[str, int]]
) -> None:
    user, _ = library
    first = await (
        await client.get("/api/pmd/posts?limit=1&hashtag=cats", headers=user.auth)
    ).json()
    cursor = first["next_cursor"]
    assert first["total_count"] == 2 and cursor
    same = await client.get(
        f"/api/pmd/posts?limit=1&hashtag=%23Cats&cursor={cursor}", headers=user.auth
    )
    assert same.status == 200  # the same filter, spelled another way
    for other in ("hashtag=wip", "", "hashtag=cats&hidden=false"):
        resp = await client.get(
            f"/api/pmd/posts?limit=1&{other}&cursor={cursor}", headers=user.auth
        )
        body = await assert_problem(resp, 400)
        assert body["errors"][0]["field"] == "cursor", other
        assert "filter" in body["detail"]
    # And an unfiltered walk's cursor under a filter.
    plain = await (await client.get("/api/pmd/posts?limit=1", headers=user.auth)).json()
    resp = await client.get(
        f"/api/pmd/posts?limit=1&q=cat&cursor={plain['next_cursor']}", headers=user.auth
    )
    assert (await assert_problem(resp, 400))["errors"][0]["field"] == "cursor"


async def test_a_filtered_page_is_planned_for_its_keys_and_not_counted_again(
    factory: Factory, database_url: str
) -> None:
    """Each filtered statement is planned for its own keys: none stays prepared on the
    connection, so none gets the generic plan PostgreSQL may keep for a statement run five
    times (it cannot drop the absent keys), while the plain listing's statement is kept; each
    page counts the set as it is then."""
    user = await factory.user()
    await factory.posts_bulk(user, 30)
    await factory.pool.execute("UPDATE posts SET hashtags = '{wip}' WHERE id % 3 = 0")
    where = await check_filter(factory.pool, FilterKeys(hashtag=["wip"]))
    async with logging_pool(database_url, "pmd-test-filtered") as (pool, _):
        for _ in range(7):
            first = await listing.list_posts(pool, user.id, 4, None, False, where)
        await factory.pool.execute("UPDATE posts SET hashtags = '{wip}' WHERE id % 3 = 1")
        later = await listing.list_posts(pool, user.id, 4, first.next_cursor, False, where)
        await listing.list_posts(pool, user.id, 4, None, False)
        kept = {r["statement"] for r in await pool.fetch(SQL_PREPARED)}
    assert (first.total_count, later.total_count) == (10, 20)
    newest = default_sort(False)
    assert listing.SQL_PAGES[False, False, newest][0] in kept
    assert kept.isdisjoint(listing.SQL_PAGES[False, True, newest])


async def _shaped_and_not(
    pool: Any, values: dict[str, object], condition: Callable[[frozenset[str] | None], str]
) -> list[list[int]]:
    """The ids of the owner's posts `condition` holds for: written for every shape, then
    shaped for `values`."""
    found = []
    for shape in (None, given(values)):
        sql = Named(
            "SELECT coalesce(array_agg(p.id ORDER BY p.id), '{}') FROM posts p "
            f"WHERE p.owner_id = :owner AND p.kind = 'artwork' AND {condition(shape)}"
        )
        found.append(await pool.fetchval(*sql.bind(values)))
    return found


async def test_a_statement_shaped_for_its_keys_matches_what_the_one_for_every_key_matches(
    factory: Factory, library: tuple[UserRow, dict[str, int]]
) -> None:
    """A policy's run tests only its filter's keys (`predicate`'s shape): each key alone and
    combined, it finds the posts the listing's statement for every key finds."""
    user, p = library
    extra = [({"min_reactions": 1}, []), ({"min_comments": 0, "min_views": 0}, list(p))]
    for query, names in [*EACH_KEY, *COMBINED, *extra]:
        keys = {k: [v] if k == "hashtag" and isinstance(v, str) else v for k, v in query.items()}
        where = await check_filter(factory.pool, msgspec.convert(keys, FilterKeys))
        values = where.named() | {"owner": user.id}
        found = await _shaped_and_not(factory.pool, values, lambda s: predicate(shape=s))
        assert found[0] == found[1] == sorted(p[n] for n in names), query


async def test_a_policy_shaped_for_its_exceptions_keeps_what_the_one_for_every_one_keeps(
    factory: Factory, library: tuple[UserRow, dict[str, int]]
) -> None:
    """A run tests only its policy's `keep` exceptions: alone and together, they keep the posts
    the statement testing every exception keeps."""
    user, p = library
    none = dict.fromkeys(
        ("keep_min_reactions", "keep_min_comments", "keep_min_views", "keep_remixable"), None
    )
    cases: list[tuple[dict[str, object], list[str]]] = [
        ({}, []),
        ({"keep_tags": ["cats"]}, ["cat", "layers"]),
        ({"keep_remixable": False}, ["noremix"]),
        ({"keep_has_layers": True, "keep_tags": ["dogs"]}, ["dog", "layers"]),
        ({"keep_min_reactions": 1, "keep_min_comments": 1}, []),
        ({"keep_min_views": 0}, list(p)),
    ]
    for keep, names in cases:
        values = none | {"keep_tags": [], "keep_has_layers": None, "owner": user.id} | keep
        found = await _shaped_and_not(factory.pool, values, lambda s: kept("p", shape=s))
        assert found[0] == found[1] == sorted(p[n] for n in names), keep
