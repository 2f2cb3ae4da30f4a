"""Benchmark of the filtered list and of an action by filter: `python -m bench.filters`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from statistics import median
from typing import Any

import aiohttp
import asyncpg
import msgspec
from aiohttp import web

from bench import cli
from bench.posts import (
    DIGEST,
    FLOOR_COLUMNS,
    LIVE_MATCH,
    TOTALS,
    Lister,
    against,
    against_floor,
    newest_floor,
    pair,
    seed_listers,
    served,
    unpaced,
)
from pmd_service.core.db import settings_pool
from pmd_service.core.settings import Settings
from pmd_service.features.posts import listing
from pmd_service.features.posts.filters import FilterKeys, check_filter
from pmd_service.features.posts.schemas import PageTarget
from pmd_service.features.posts.sorting import check_sort
from support.stack import connected

POSTS, ACTED, PAGE = 20_000, 10_000, 512
SORT_KEYS = ("sort", "order")
TARGET_PAGE, TARGET_ACTION = 1.3, 2.0
# Each sorted first page of the 20,000 posts over HTTP (the page's re-sort asks for less).
TARGET_RESORT_MS = 1000
# Every other post carries `batch` (the action's 10,000); one in five `wip` (the list's filter).
SQL_TAG = """
UPDATE posts SET hashtags = CASE WHEN id % 2 = 0 THEN '{batch}'::varchar[] ELSE '{pixel}' END
    || CASE WHEN id % 5 = 0 THEN '{wip}'::varchar[] ELSE '{}' END
WHERE owner_id = $1
"""
FILTER = {"hashtag": "wip", "hidden": "false", "created_after": "2024-01-01T00:10:00Z"}

# The floor for the same filter written out, its values as parameters, as a server gets them.
_MATCH = f"""{LIVE_MATCH}
    AND p.hashtags @> $3::varchar[] AND (p.hidden_by_user OR p.hidden_by_mod) = $4
    AND p.created_at >= $5"""
FILTER_VALUES = (["wip"], False, datetime(2024, 1, 1, 0, 10, tzinfo=UTC))
_TAGGED = f"{LIVE_MATCH} AND p.hashtags @> $3::varchar[]"
# The same with FILTER's values in its text: a plan no server gets for its users' filters.
_MATCH_WRITTEN = f"""{LIVE_MATCH}
    AND p.hashtags @> '{{wip}}'::varchar[] AND NOT (p.hidden_by_user OR p.hidden_by_mod)
    AND p.created_at >= timestamptz '2024-01-01T00:10:00Z'"""
_TAGGED_WRITTEN = f"{LIVE_MATCH} AND p.hashtags @> '{{wip}}'::varchar[]"


def sorted_floor(key: str, count: str, match: str, direction: str) -> str:
    """The floor of a first page in an order no index gives: ids and keys sorted, then rows."""
    return f"""WITH page AS MATERIALIZED (SELECT p.id, {key} AS k FROM posts p {count}
    WHERE {match} ORDER BY k {direction}, p.id {direction} LIMIT $2)
{FLOOR_COLUMNS}, t.total_count, t.digest
FROM page JOIN posts p ON p.id = page.id LEFT JOIN licenses l ON l.id = p.license_id
    {TOTALS.format(DIGEST, match)}
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


# Every other key varied: sizes, licenses (a third none), remix, hidden, native formats.
SQL_VARY_KEYS = """
UPDATE posts SET license_id = (ARRAY[$2::int, $3::int, NULL])[id % 3 + 1], remixable = id % 4 > 0,
    hidden_by_user = id % 7 = 0, hidden_by_mod = id % 11 = 0
WHERE owner_id = $1
"""
SQL_VARY_FILES = """
UPDATE post_files f SET file_bytes = (f.post_id * 7919) % 100003,
    format = (ARRAY['png', 'gif', 'bmp'])[f.post_id % 3 + 1]
FROM posts p WHERE p.id = f.post_id AND p.owner_id = $1 AND f.is_native
"""
_NATIVE = """CROSS JOIN LATERAL (SELECT coalesce((SELECT {} FROM post_files nf
    WHERE nf.post_id = p.id AND nf.is_native), {}) AS k) s"""
_SIZE = _NATIVE.format("greatest(nf.file_bytes, 0)::bigint + 1", "0")
_TITLE = "CROSS JOIN LATERAL natural_title_key(p.title) s (k)"
# The other filter keys: text, no license, remix, format; layers, a date bound, the counts.
_VISIBLE = "NOT c.hidden_by_mod AND NOT c.deleted_by_owner AND NOT c.deleted_by_mod"
_MATCH_TEXT = f"""{LIVE_MATCH}
    AND (strpos(lower(p.title), $3) > 0 OR strpos(lower(coalesce(p.description, '')), $3) > 0)
    AND p.license_id IS NULL AND p.remixable = $4
    AND EXISTS (SELECT 1 FROM post_files f WHERE f.post_id = p.id AND f.is_native
        AND f.format = $5)"""
_MATCH_TEXT_WRITTEN = _MATCH_TEXT.replace("$3", "'7'").replace("$4", "true").replace("$5", "'bmp'")
_MATCH_COUNTS = f"""{LIVE_MATCH}
    AND p.mkpx_file_bytes IS NULL AND p.created_at < $3 AND p.view_count >= $4
    AND (SELECT count(*) FROM reactions r WHERE r.post_id = p.id) >= $5
    AND (SELECT count(*) FROM comments c WHERE c.post_id = p.id AND {_VISIBLE}) >= $6"""
BEFORE = datetime(2024, 1, 1, 1, 0, tzinfo=UTC)
_MATCH_COUNTS_WRITTEN = (
    _MATCH_COUNTS.replace("$3", "timestamptz '2024-01-01T01:00:00Z'")
    .replace("$4", "100")
    .replace("$5", "2")
    .replace("$6", "1")
)


@dataclass(frozen=True)
class Shape:
    query: dict[str, str]
    floor: str
    values: tuple[object, ...] = ()  # the request's filter values: the floor's $3..
    written: str | None = None  # the floor with the values written into its text


# A filter's floor: its match, its values ($3..) and the match with them written in.
Match = tuple[str, tuple[object, ...], str | None]
EVERY: Match = (LIVE_MATCH, (), None)
MATCH: Match = (_MATCH, FILTER_VALUES, _MATCH_WRITTEN)
TAGGED: Match = (_TAGGED, (["wip"],), _TAGGED_WRITTEN)
TEXT: Match = (_MATCH_TEXT, ("7", True, "bmp"), _MATCH_TEXT_WRITTEN)


def _sorted(
    query: dict[str, str], key: str, count: str, direction: str, match: Match = EVERY
) -> Shape:
    where, values, written = match
    floor = sorted_floor(key, count, where, direction)
    return Shape(query, floor, values, written and sorted_floor(key, count, written, direction))


FILTERED = Shape(FILTER, newest_floor(_MATCH), FILTER_VALUES, newest_floor(_MATCH_WRITTEN))
OLDEST = "ORDER BY p.created_at ASC, p.id ASC LIMIT $2"
# The first pages in the server's other orders (as a first click asks) and other filter keys.
SORTED = {
    "upload date, oldest first": Shape(
        {"sort": "created_at", "order": "asc"}, newest_floor(LIVE_MATCH, OLDEST)
    ),
    "title": _sorted({"sort": "title"}, "s.k", _TITLE, "ASC"),
    "file size": _sorted({"sort": "file_bytes"}, "s.k", _SIZE, "DESC"),
    "license": _sorted(
        {"sort": "license"},
        "coalesce(lk.identifier::text, '')",
        "LEFT JOIN licenses lk ON lk.id = p.license_id",
        "ASC",
    ),
    "remix": _sorted({"sort": "remixable"}, "p.remixable::int", "", "DESC"),
    "hidden": _sorted(
        {"sort": "hidden"},
        "CASE WHEN p.hidden_by_mod THEN 2 WHEN p.hidden_by_user THEN 1 ELSE 0 END",
        "",
        "DESC",
    ),
    "format": _sorted({"sort": "format"}, "s.k", _NATIVE.format("nf.format::text", "''"), "ASC"),
    "views": _sorted({"sort": "view_count"}, "p.view_count", "", "DESC"),
    "reactions, tag wip": _sorted(
        {"sort": "reaction_count", "hashtag": "wip"}, "s.k", _REACTIONS, "DESC", TAGGED
    ),
    "comments": _sorted({"sort": "comment_count"}, "s.k", _COMMENTS, "DESC"),
    "title, the filter": _sorted(
        {"sort": "title", "order": "asc"} | FILTER, "s.k", _TITLE, "ASC", MATCH
    ),
    "file size, q license format remixable": _sorted(
        {"sort": "file_bytes", "q": "7", "license": "none", "format": "bmp", "remixable": "true"},
        "s.k",
        _SIZE,
        "DESC",
        TEXT,
    ),
    "newest, layers date and counts": Shape(
        {
            "has_layers": "false",
            "created_before": BEFORE.isoformat(),
            "min_views": "100",
            "min_reactions": "2",
            "min_comments": "1",
        },
        newest_floor(_MATCH_COUNTS),
        (BEFORE, 100, 2, 1),
        newest_floor(_MATCH_COUNTS_WRITTEN),
    ),
}


SQL_LICENSE = """
WITH made AS (INSERT INTO licenses (identifier, title) VALUES ($1, $1) ON CONFLICT DO NOTHING
    RETURNING id)
SELECT id FROM made UNION ALL SELECT id FROM licenses WHERE identifier = $1
"""
SQL_TAGGED = """
SELECT id FROM posts
WHERE owner_id = $1 AND kind = 'artwork' AND NOT deleted_by_user AND hashtags @> '{batch}'
ORDER BY id
"""
SQL_BARE_HIDE = "UPDATE posts SET hidden_by_user = $2 WHERE id = ANY($1::int[])"


@dataclass
class Served:
    """The floor's statement as JSON over the endpoint's loopback HTTP, and nothing else."""

    conn: asyncpg.Connection | None = None
    statement: str = ""
    args: tuple[object, ...] = ()

    def app(self) -> web.Application:
        async def rows(_: web.Request) -> web.Response:
            assert self.conn is not None
            found = await self.conn.fetch(self.statement, *self.args)
            body = msgspec.json.encode([dict(r) for r in found])
            return web.Response(body=body, content_type="application/json")

        app = web.Application()
        app.router.add_get("/floor", rows)
        return app


async def page(
    http: aiohttp.ClientSession,
    conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    user: Lister,
    requests: int,
    floors: tuple[Served, aiohttp.ClientSession],
    shape: Shape = FILTERED,
    name: str = "filtered",
) -> dict[str, Any]:
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
        listed.target = PageTarget(user.sqid, user.handle)
        return msgspec.json.encode(listed)

    async def floor() -> list[Any]:
        return await conn.fetch(shape.floor, user.id, PAGE + 1, *shape.values)

    async def written() -> list[Any]:
        if shape.written is None:
            return await floor()
        return await conn.fetch(shape.written, user.id, PAGE + 1)

    served, floor_http = floors
    served.conn, served.statement = conn, shape.floor
    served.args = (user.id, PAGE + 1, *shape.values)

    async def served_floor() -> Any:
        async with floor_http.get("/floor") as resp:
            assert resp.status == 200, await resp.text()
            return json.loads(await resp.read())

    async def idle() -> None:
        """The served floor's partner in the rounds: nothing."""

    body = json.loads(await get())
    assert json.loads(await in_process()) == body
    # Each floor yields the same page, total and digest.
    for rows in (await floor(), await written(), await served_floor()):
        assert [i["id"] for i in body["items"]] == [r["id"] for r in rows[:PAGE]]
        assert body["total_count"] == rows[0]["total_count"]
        assert body["match_digest"] == rows[0]["digest"]
    # Five series interleaved round by round, so the ratios across them hold too.
    [(http_ms, sql_ms), (own_ms, written_ms), (served_ms, _)] = await against_floor(
        [(get, floor), (in_process, written), (served_floor, idle)], requests
    )
    own = {**pair(own_ms), "ratio": median(own_ms) / median(sql_ms)}
    figures = {"matching": body["total_count"], **against(http_ms, sql_ms), "in_process": own}
    figures["served"] = {**pair(served_ms), "ratio": median(http_ms) / median(served_ms)}
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
    [times] = await against_floor(
        [(hide_by_filter, partial(bare, True))], rounds, 0, partial(bare, False)
    )
    figures = {"posts": ACTED, "rounds": rounds, **against(*times)}
    cli.show(
        f"POST /api/pmd/action hide by filter ({ACTED:,} posts) against a bare UPDATE", figures
    )
    return figures


async def bench(settings: Settings, requests: int, rounds: int) -> dict[str, Any]:
    user = (await seed_listers(settings, {"artist": (POSTS, True)}))["artist"]
    pool = await settings_pool(settings, "pmd-bench-listing", min_size=2, max_size=2)
    floors = Served()
    async with (
        pool,
        connected(settings.database_url, "pmd-bench-floor") as conn,
        served(unpaced(settings)) as http,
        served(settings, floors.app()) as floor_http,
    ):
        await conn.execute(SQL_TAG, user.id)
        await conn.execute(SQL_VARY_REACTIONS)
        licenses = [await conn.fetchval(SQL_LICENSE, name) for name in ("CC-BY-4.0", "MIT")]
        await conn.execute(SQL_VARY_KEYS, user.id, *licenses)
        await conn.execute(SQL_VARY_FILES, user.id)
        await conn.execute("VACUUM ANALYZE")
        timed = partial(page, http, conn, pool, user, requests, (floors, floor_http))
        listed = await timed()
        ordered = {name: await timed(shape, name) for name, shape in SORTED.items()}
        acted = await action(http, conn, user, rounds)
    slowest = max(ordered, key=lambda name: ordered[name]["http"]["p99_ms"])
    return {
        "posts": POSTS,
        "page_size": PAGE,
        "requests": requests,
        "filter": FILTER,
        "page": listed,
        "sorted": ordered,
        "action": acted,
        "targets": {"page": TARGET_PAGE, "action": TARGET_ACTION, "resort_ms": TARGET_RESORT_MS},
        "slowest_sorted": slowest,
    }


if __name__ == "__main__":
    parser = cli.parser("filters", __doc__)
    parser.add_argument("--requests", type=int, default=100, help="timed filtered pages")
    parser.add_argument("--rounds", type=int, default=10, help="timed actions on 10,000 posts")
    args = parser.parse_args()
    cli.save(args.json, cli.in_stack(bench, max(args.requests, 1), max(args.rounds, 1)))
