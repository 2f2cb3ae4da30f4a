"""Benchmark of the filtered list and of an action by filter: `python -m bench.filters`."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from statistics import median
from typing import Any

import aiohttp
import asyncpg
import msgspec

from bench import cli
from bench.posts import (
    FLOOR_COLUMNS,
    ORDER,
    Lister,
    against,
    against_floor,
    pair,
    seed_listers,
    served,
)
from pmd_service.core.db import settings_pool
from pmd_service.core.settings import Settings
from pmd_service.posts import listing
from pmd_service.posts.filters import FilterKeys, check_filter
from pmd_service.posts.sorting import check_sort
from support.stack import connected, fresh_stack

POSTS, ACTED, PAGE = 20_000, 10_000, 512
SORT_KEYS = ("sort", "order")
TARGET_PAGE, TARGET_ACTION = 1.3, 2.0
# Every other post carries `batch` (the action's 10,000); one in five `wip` (the list's filter).
SQL_TAG = """
UPDATE posts SET hashtags = CASE WHEN id % 2 = 0 THEN '{batch}'::varchar[] ELSE '{pixel}' END
    || CASE WHEN id % 5 = 0 THEN '{wip}'::varchar[] ELSE '{}' END
WHERE owner_id = $1
"""
FILTER = {"hashtag": "wip", "hidden": "false", "created_after": "2024-01-01T00:10:00Z"}

# The floor for the same filter written out, its values as parameters, as a server gets them.
_LIVE = "p.owner_id = $1 AND p.kind = 'artwork' AND NOT p.deleted_by_user"
_MATCH = f"""{_LIVE}
    AND p.hashtags @> $3::varchar[] AND (p.hidden_by_user OR p.hidden_by_mod) = $4
    AND p.created_at >= $5"""
FILTER_VALUES = (["wip"], False, datetime(2024, 1, 1, 0, 10, tzinfo=UTC))
_TAGGED = f"{_LIVE} AND p.hashtags @> $3::varchar[]"
# The same with FILTER's values in its text: a plan no server gets for its users' filters.
_MATCH_WRITTEN = f"""{_LIVE}
    AND p.hashtags @> '{{wip}}'::varchar[] AND NOT (p.hidden_by_user OR p.hidden_by_mod)
    AND p.created_at >= timestamptz '2024-01-01T00:10:00Z'"""
_TAGGED_WRITTEN = f"{_LIVE} AND p.hashtags @> '{{wip}}'::varchar[]"
_DIGEST = """md5(count(p.id) || ':' || coalesce(sum(hashint4(p.id)), 0) || ':'
    || coalesce(sum(hashint4extended(p.id, 1) % 2147483647), 0))"""
_TOTALS = "CROSS JOIN (SELECT count(*), {} FROM posts p WHERE {}) AS t (total_count, digest)"


def newest_floor(match: str) -> str:
    return f"""{FLOOR_COLUMNS}, t.total_count, t.digest
FROM posts p LEFT JOIN licenses l ON l.id = p.license_id {_TOTALS.format(_DIGEST, match)}
WHERE {match}
{ORDER}"""


def sorted_floor(key: str, count: str, match: str, direction: str) -> str:
    """The floor of a first page in an order no index gives: ids and keys sorted, then rows."""
    return f"""WITH page AS MATERIALIZED (SELECT p.id, {key} AS k FROM posts p {count}
    WHERE {match} ORDER BY k {direction}, p.id {direction} LIMIT $2)
{FLOOR_COLUMNS}, t.total_count, t.digest
FROM page JOIN posts p ON p.id = page.id LEFT JOIN licenses l ON l.id = p.license_id
    {_TOTALS.format(_DIGEST, match)}
ORDER BY page.k {direction}, page.id {direction}"""


# Reactions from none to five a post, so that a sort by them is more than ties.
SQL_VARY_REACTIONS = """
DELETE FROM reactions WHERE id IN (SELECT id FROM (SELECT id, post_id, row_number() OVER
    (PARTITION BY post_id ORDER BY id) AS n FROM reactions) AS x WHERE n > abs(hashint4(post_id)) % 6)
"""
_COUNT = "CROSS JOIN LATERAL (SELECT count(*) AS k FROM {} WHERE x.post_id = p.id{}) s"
_REACTIONS = _COUNT.format("reactions x", "")
_COMMENTS = _COUNT.format(
    "comments x", " AND NOT x.hidden_by_mod AND NOT x.deleted_by_owner AND NOT x.deleted_by_mod"
)


@dataclass(frozen=True)
class Shape:
    query: dict[str, str]
    floor: str
    values: tuple[object, ...] = ()  # the request's filter values: the floor's $3..
    written: str | None = None  # the floor with the values written into its text


def _sorted(
    query: dict[str, str],
    key: str,
    count: str,
    direction: str,
    match: str = _LIVE,
    values: tuple[object, ...] = (),
    written: str | None = None,
) -> Shape:
    floor = sorted_floor(key, count, match, direction)
    return Shape(query, floor, values, written and sorted_floor(key, count, written, direction))


FILTERED = Shape(FILTER, newest_floor(_MATCH), FILTER_VALUES, newest_floor(_MATCH_WRITTEN))
# The first pages in the server's other orders.
SORTED = {
    "views": _sorted({"sort": "view_count"}, "p.view_count", "", "DESC"),
    "reactions, tag wip": _sorted({"sort": "reaction_count", "hashtag": "wip"}, "s.k", _REACTIONS,
                                  "DESC", _TAGGED, (["wip"],), _TAGGED_WRITTEN),
    "comments": _sorted({"sort": "comment_count"}, "s.k", _COMMENTS, "DESC"),
    "title, the filter": _sorted({"sort": "title", "order": "asc"} | FILTER, "lower(p.title)", "",
                                 "ASC", _MATCH, FILTER_VALUES, _MATCH_WRITTEN),
}  # fmt: skip


SQL_TAGGED = """
SELECT id FROM posts
WHERE owner_id = $1 AND kind = 'artwork' AND NOT deleted_by_user AND hashtags @> '{batch}'
ORDER BY id
"""
SQL_BARE_HIDE = "UPDATE posts SET hidden_by_user = $2 WHERE id = ANY($1::int[])"


async def page(
    http: aiohttp.ClientSession, conn: asyncpg.Connection, pool: asyncpg.Pool, user: Lister,
    requests: int, shape: Shape = FILTERED, name: str = "filtered",
) -> dict[str, Any]:  # fmt: skip
    params = {"limit": str(PAGE)} | shape.query
    keys = {k: [v] if k == "hashtag" else v for k, v in shape.query.items() if k not in SORT_KEYS}
    filter_keys = msgspec.convert(keys, FilterKeys, strict=False)
    sort = check_sort(shape.query.get("sort"), shape.query.get("order"), deleted=False)

    async def get() -> bytes:
        # Timed to the reply's last byte: parsing the JSON is the client's work.
        async with http.get("/api/pmd/posts", params=params, headers=user.auth) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.read()

    async def in_process() -> bytes:
        """The endpoint's own work, without HTTP and its token."""
        where = await check_filter(pool, filter_keys)
        listed = await listing.list_posts(pool, user.id, PAGE, None, False, where, sort=sort)
        return msgspec.json.encode(listed)

    async def floor() -> list[Any]:
        return await conn.fetch(shape.floor, user.id, PAGE + 1, *shape.values)

    async def written() -> list[Any]:
        if shape.written is None:
            return await floor()
        return await conn.fetch(shape.written, user.id, PAGE + 1)

    body = json.loads(await get())
    assert json.loads(await in_process()) == body
    # Each floor yields the same page, total and digest.
    for rows in (await floor(), await written()):
        assert [i["id"] for i in body["items"]] == [r["id"] for r in rows[:PAGE]]
        assert body["total_count"] == rows[0]["total_count"]
        assert body["match_digest"] == rows[0]["digest"]
    # Four series interleaved round by round, so the ratios across them hold too.
    [(http_ms, sql_ms), (own_ms, written_ms)] = await against_floor(
        [(get, floor), (in_process, written)], requests
    )
    own = {**pair(own_ms), "ratio": median(own_ms) / median(sql_ms)}
    figures = {"matching": body["total_count"], **against(http_ms, sql_ms), "in_process": own}
    if shape.written is not None:
        figures["written"] = {**pair(written_ms), "ratio": median(http_ms) / median(written_ms)}
    cli.show(f"GET …/posts?limit={PAGE}, {name}, against its floor SQL", figures)
    return figures


async def action(
    http: aiohttp.ClientSession, conn: asyncpg.Connection, user: Lister, rounds: int
) -> dict[str, Any]:
    ids = [r["id"] for r in await conn.fetch(SQL_TAGGED, user.id)]
    assert len(ids) == ACTED, len(ids)
    await conn.execute(SQL_BARE_HIDE, ids, False)

    async def hide_by_filter() -> None:
        body = {"action": "hide", "filter": {"hashtag": ["batch"]}, "expect_count": ACTED}
        async with http.post("/api/pmd/action", json=body, headers=user.auth) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["changed_count"] == ACTED

    async def bare(hidden: bool) -> None:
        assert await conn.execute(SQL_BARE_HIDE, ids, hidden) == f"UPDATE {ACTED}"

    for _ in range(2):  # warm-up
        await hide_by_filter()
        await bare(False)
    # Each run resets the rows for the next.
    [times] = await against_floor([(hide_by_filter, partial(bare, True))], rounds, 0,
                                  partial(bare, False))  # fmt: skip
    figures = {"posts": ACTED, "rounds": rounds, **against(*times)}
    cli.show(f"POST /api/pmd/action hide by filter ({ACTED:,} posts) against a bare UPDATE",
             figures)  # fmt: skip
    return figures


async def bench(settings: Settings, requests: int, rounds: int) -> dict[str, Any]:
    user = (await seed_listers(settings, {"artist": (POSTS, True)}))["artist"]
    pool = await settings_pool(settings, "pmd-bench-listing", min_size=2, max_size=2)
    async with (
        pool,
        connected(settings.database_url, "pmd-bench-floor") as conn,
        served(settings) as http,
    ):
        await conn.execute(SQL_TAG, user.id)
        await conn.execute(SQL_VARY_REACTIONS)
        await conn.execute("VACUUM ANALYZE")
        listed = await page(http, conn, pool, user, requests)
        ordered = {name: await page(http, conn, pool, user, requests, shape, name)
                   for name, shape in SORTED.items()}  # fmt: skip
        acted = await action(http, conn, user, rounds)
    return {"posts": POSTS, "page_size": PAGE, "requests": requests, "filter": FILTER,
            "page": listed, "sorted": ordered, "action": acted, "targets": {"page": TARGET_PAGE,
            "action": TARGET_ACTION}}  # fmt: skip


async def _in_stack(requests: int, rounds: int) -> dict[str, Any]:
    async with fresh_stack() as settings:
        return await bench(settings, requests, rounds)


def main() -> None:
    parser = cli.parser("filters", __doc__)
    parser.add_argument("--requests", type=int, default=100, help="timed filtered pages")
    parser.add_argument("--rounds", type=int, default=10, help="timed actions on 10,000 posts")
    args = parser.parse_args()
    cli.save(args.json, asyncio.run(_in_stack(max(args.requests, 1), max(args.rounds, 1))))


if __name__ == "__main__":
    main()
