"""Benchmark of the posts endpoints over loopback: `python -m bench.posts`.

Not a test: it prints figures and exits 0. It seeds a fresh database (created and dropped here)
with a user owning 10,000 artworks (plus comments, reactions, other users' posts, playlists and
deleted posts), serves `create_app` from a real aiohttp server on a loopback port, and reports
p50/p99 of

- GET /api/pmd/posts?limit=512 on the first and on the last page,
- a 128-id hide action (each one really hides 128 posts),

and the ratio of the list endpoint's p50 to the p50 of the same page's SQL run directly with
asyncpg in this process (the floor). Targets: list p50 <= 25 ms and <= 2x the floor; last page
within 1.3x of the first; 128-id hide p99 <= 20 ms.

PostgreSQL and Redis: DATABASE_URL / REDIS_URL when set, otherwise embedded ones started the
way the app starts them (under .data/bench).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from harness.stack import fresh_stack
from pmd_service.db import connect, create_pool
from pmd_service.migrate import apply_migrations
from pmd_service.posts import batch_sql, listing
from pmd_service.posts.cursor import Cursor
from pmd_service.public_ids import PublicIds
from pmd_service.settings import Settings
from pmd_service.tokens import mint_token
from pmd_service.web.app import create_app

POSTS = 10_000
OTHER_POSTS = 20_000
PAGE = 512
BATCH = 128

TARGET_LIST_P50_MS = 25.0
TARGET_LIST_FLOOR_RATIO = 2.0
TARGET_LAST_FIRST_RATIO = 1.3
TARGET_ACTION_P99_MS = 20.0


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Figures:
    name: str
    samples_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p99(self) -> float:
        return _percentile(self.samples_ms, 0.99)

    def line(self) -> str:
        return f"{self.name:<44} p50 {self.p50:7.2f} ms   p99 {self.p99:7.2f} ms   n={len(self.samples_ms)}"


async def _ms(operation: Awaitable[object]) -> float:
    start = time.perf_counter()
    await operation
    return (time.perf_counter() - start) * 1000


SQL_SEED_POSTS = """
INSERT INTO posts (storage_key, storage_shard, owner_id, title, description, kind, width,
                   height, frame_count, art_url, view_count, license_id, created_at,
                   hidden_by_user, deleted_by_user, deleted_by_user_date)
SELECT gen_random_uuid(), to_hex(g % 256), $1, 'Artwork ' || g, 'A piece of pixel art #' || g,
       $3, 64, 64, 1 + g % 8, '/vault/' || to_hex(g % 256) || '/' || g || '.png', g % 1000,
       CASE WHEN g % 3 = 0 THEN $4::int END,
       -- Four posts per second: many share a timestamp, as bulk uploads do.
       timestamptz '2024-01-01' + make_interval(secs => (g / 4)::double precision),
       g % 17 = 0, $5, CASE WHEN $5 THEN now() - interval '1 day' END
FROM generate_series(1, $2) AS g
RETURNING id
"""
SQL_SET_SQIDS = """
UPDATE posts p SET public_sqid = s.sqid
FROM unnest($1::int[], $2::text[]) AS s(id, sqid) WHERE p.id = s.id
"""
SQL_SEED_FILES = """
INSERT INTO post_files (post_id, format, file_bytes, is_native)
SELECT id, 'png', 1000 + id % 5000, true FROM posts
UNION ALL
SELECT id, 'webp', 800 + id % 4000, false FROM posts WHERE id % 2 = 0
"""
# About 3 comments (one of them not visible) and 5 reactions per post.
SQL_SEED_COMMENTS = """
INSERT INTO comments (post_id, author_id, body, hidden_by_mod, deleted_by_owner)
SELECT p.id, $1, 'Nice work', c = 3 AND p.id % 2 = 0, c = 3 AND p.id % 2 = 1
FROM posts p, generate_series(1, 3) AS c
"""
SQL_SEED_REACTIONS = """
INSERT INTO reactions (post_id, user_id, emoji)
SELECT p.id, $1, (ARRAY['❤️', '🔥', '👍', '✨', '😂'])[r]
FROM posts p, generate_series(1, 5) AS r
"""


async def seed(dsn: str, ids: PublicIds, secret: str) -> tuple[int, str]:
    """The benchmarked user's (id, token)."""
    conn = await connect(dsn, "pmd-bench-seed")
    try:
        await apply_migrations(conn)
        users = await conn.fetch(
            """
            INSERT INTO users (handle, email)
            SELECT 'bench' || g, 'bench' || g || '@example.com' FROM generate_series(1, 3) g
            RETURNING id
            """
        )
        owner, other, fan = (r["id"] for r in users)
        await conn.executemany(
            "UPDATE users SET public_sqid = $2 WHERE id = $1",
            [(u, ids.encode(u)) for u in (owner, other, fan)],
        )
        license_id = await conn.fetchval(
            "INSERT INTO licenses (identifier, title) VALUES ('CC-BY-4.0', 'CC BY 4.0') RETURNING id"
        )
        post_ids: list[int] = []
        for user, count, kind, deleted in (
            (other, OTHER_POSTS // 2, "artwork", False),
            (owner, POSTS, "artwork", False),
            (owner, 300, "playlist", False),
            (owner, 300, "artwork", True),
            (other, OTHER_POSTS // 2, "artwork", False),
        ):
            rows = await conn.fetch(SQL_SEED_POSTS, user, count, kind, license_id, deleted)
            post_ids += [r["id"] for r in rows]
        await conn.execute(SQL_SET_SQIDS, post_ids, [ids.encode(i) for i in post_ids])
        await conn.execute(SQL_SEED_FILES)
        await conn.execute(SQL_SEED_COMMENTS, fan)
        await conn.execute(SQL_SEED_REACTIONS, fan)
        await conn.execute("VACUUM ANALYZE")
        counts = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM posts) AS posts,
                   (SELECT count(*) FROM comments) AS comments,
                   (SELECT count(*) FROM reactions) AS reactions
            """
        )
        assert counts is not None
        print(
            f"seeded: {counts['posts']} posts ({POSTS} listed for the benchmarked user), "
            f"{counts['comments']} comments, {counts['reactions']} reactions"
        )
    finally:
        await conn.close()
    return owner, mint_token(secret, ids.encode(owner))


async def explain(pool: asyncpg.Pool, owner: int, cursor: Cursor | None) -> None:
    if cursor is None:
        plan = await pool.fetch(
            "EXPLAIN (ANALYZE, BUFFERS) " + listing.SQL_LIST_FIRST, owner, PAGE + 1
        )
    else:
        plan = await pool.fetch(
            "EXPLAIN (ANALYZE, BUFFERS) " + listing.SQL_LIST_AFTER,
            owner,
            PAGE + 1,
            cursor.at,
            cursor.post_id,
        )
    print("\n".join(r[0] for r in plan))


async def bench(
    settings: Settings, requests: int, show_plan: bool, depths: list[int]
) -> dict[str, Any]:
    assert settings.database_url is not None
    ids = PublicIds(settings.sqids_alphabet)
    owner, token = await seed(settings.database_url, ids, settings.jwt_secret_key)
    headers = {"Authorization": f"Bearer {token}"}

    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    base = f"http://{host}:{port}"
    floor_pool = await create_pool(settings.database_url, "pmd-bench-floor", min_size=1, max_size=1)
    try:
        async with aiohttp.ClientSession(
            base, headers=headers, connector=aiohttp.TCPConnector(limit=1)
        ) as http:
            # Walk every page once: checks the listing and finds the last page's cursor.
            cursor: str | None = None
            pages: list[str | None] = []
            seen: set[int] = set()
            listed = 0
            while True:
                pages.append(cursor)
                params = {"limit": str(PAGE)} | ({"cursor": cursor} if cursor else {})
                async with http.get("/api/pmd/posts", params=params) as resp:
                    assert resp.status == 200, await resp.text()
                    body = await resp.json()
                listed += len(body["items"])
                seen.update(item["id"] for item in body["items"])
                assert body["total_count"] == POSTS, body["total_count"]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert listed == len(seen) == POSTS, (listed, len(seen))
            last = pages[-1]
            assert last is not None
            last_cursor = Cursor.decode(last, deleted=False)
            print(f"listing: {len(pages)} pages of up to {PAGE}, {listed} posts, each once")

            async def get_page(cursor: str | None) -> None:
                params = {"limit": str(PAGE)} | ({"cursor": cursor} if cursor else {})
                async with http.get("/api/pmd/posts", params=params) as resp:
                    await resp.read()
                    assert resp.status == 200

            async def sql_page(after: Cursor | None) -> None:
                if after is None:
                    await floor_pool.fetch(listing.SQL_LIST_FIRST, owner, PAGE + 1)
                else:
                    await floor_pool.fetch(
                        listing.SQL_LIST_AFTER, owner, PAGE + 1, after.at, after.post_id
                    )

            # Warm-up: caches, prepared statements, pool connections.
            for _ in range(20):
                await get_page(None)
                await get_page(last)
                await sql_page(None)
                await sql_page(last_cursor)

            # Interleaved, so background load on the shared machine hits every series alike.
            first: list[float] = []
            last_page: list[float] = []
            floor_first: list[float] = []
            floor_last: list[float] = []
            for _ in range(requests):
                first.append(await _ms(get_page(None)))
                floor_first.append(await _ms(sql_page(None)))
                last_page.append(await _ms(get_page(last)))
                floor_last.append(await _ms(sql_page(last_cursor)))

            # Latency by page depth (keyset pagination: page 19 should cost what page 1 does).
            by_depth: dict[int, tuple[list[float], list[float]]] = {
                d: ([], []) for d in depths if 1 <= d <= len(pages)
            }
            for _ in range(requests):
                for d, (http_ms, sql_ms) in by_depth.items():
                    page_cursor = pages[d - 1]
                    after = Cursor.decode(page_cursor, deleted=False) if page_cursor else None
                    http_ms.append(await _ms(get_page(page_cursor)))
                    sql_ms.append(await _ms(sql_page(after)))

            if show_plan:  # before the hide series dirties the visibility map
                await explain(floor_pool, owner, None)
                await explain(floor_pool, owner, last_cursor)

            owned = [
                r["id"]
                for r in await floor_pool.fetch(
                    "SELECT id FROM posts WHERE owner_id = $1 AND kind = 'artwork'"
                    " AND NOT deleted_by_user ORDER BY id",
                    owner,
                )
            ]
            chunks = [owned[i : i + BATCH] for i in range(0, len(owned) - BATCH + 1, BATCH)]
            await floor_pool.execute("UPDATE posts SET hidden_by_user = false")

            async def act(action: str, post_ids: list[int], expected: int) -> None:
                payload = {"action": action, "post_ids": post_ids}
                async with http.post("/api/pmd/action", json=payload) as resp:
                    assert resp.status == 200, await resp.text()
                    changed = (await resp.json())["affected_count"]
                assert changed == expected, (action, changed)

            for i in range(10):
                await act("hide", chunks[i], BATCH)
                await act("unhide", chunks[i], BATCH)

            async def sql_hide(post_ids: list[int], hidden: bool) -> None:
                row = await floor_pool.fetchrow(
                    batch_sql.SQL_BATCH_HIDE_BY_USER, owner, post_ids, "hide", None, hidden
                )
                assert row is not None and len(row["changed"]) == BATCH

            for i in range(10):
                await sql_hide(chunks[-1 - i], True)
                await sql_hide(chunks[-1 - i], False)
            # The same statement run directly: the action's floor, including the commit's
            # WAL flush, measured alongside so disk and CPU noise show in both series.
            hide: list[float] = []
            unhide: list[float] = []
            floor_hide: list[float] = []
            half = len(chunks) // 2
            for i in range(requests):
                chunk = chunks[i % half]
                # Each timed hide really changes 128 posts (`act` checks the count).
                hide.append(await _ms(act("hide", chunk, BATCH)))
                unhide.append(await _ms(act("unhide", chunk, BATCH)))
                other = chunks[half + i % half]
                floor_hide.append(await _ms(sql_hide(other, True)))
                await sql_hide(other, False)

    finally:
        await floor_pool.close()
        await runner.cleanup()

    f_first = Figures("GET /api/pmd/posts?limit=512 (first page)", first)
    f_last = Figures(f"GET /api/pmd/posts?limit=512 (last page, {POSTS % PAGE} items)", last_page)
    s_first = Figures("  SQL floor, first page (asyncpg direct)", floor_first)
    s_last = Figures("  SQL floor, last page (asyncpg direct)", floor_last)
    f_hide = Figures(f"POST /api/pmd/action hide {BATCH} ids", hide)
    f_unhide = Figures(f"POST /api/pmd/action unhide {BATCH} ids", unhide)
    s_hide = Figures(f"  SQL floor, hide {BATCH} ids (statement direct)", floor_hide)
    depth_rows = []
    for d, (http_ms, sql_ms) in by_depth.items():
        items = PAGE if d < len(pages) else POSTS - PAGE * (len(pages) - 1)
        f_http = Figures(f"GET …/posts, page {d} of {len(pages)} ({items} items)", http_ms)
        f_sql = Figures(f"  SQL floor, page {d}", sql_ms)
        depth_rows.append((d, items, f_http, f_sql))
    print()
    for fig in (f_first, s_first, f_last, s_last, f_hide, s_hide, f_unhide):
        print(fig.line())
    print()
    for _, _, f_http, f_sql in depth_rows:
        print(f_http.line())
        print(f_sql.line())
    ratio_first = f_first.p50 / s_first.p50
    ratio_last = f_last.p50 / s_last.p50
    last_vs_first = f_last.p50 / f_first.p50
    print()

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(
        f"list p50 first page {f_first.p50:.2f} ms (target <= {TARGET_LIST_P50_MS} ms): "
        f"{verdict(f_first.p50 <= TARGET_LIST_P50_MS)}"
    )
    print(
        f"list p50 / SQL floor p50: first page {ratio_first:.2f}x, last page {ratio_last:.2f}x "
        f"(target <= {TARGET_LIST_FLOOR_RATIO}x): "
        f"{verdict(max(ratio_first, ratio_last) <= TARGET_LIST_FLOOR_RATIO)}"
    )
    print(
        f"last page p50 / first page p50: {last_vs_first:.2f}x "
        f"(target <= {TARGET_LAST_FIRST_RATIO}x): "
        f"{verdict(last_vs_first <= TARGET_LAST_FIRST_RATIO)}"
    )
    print(
        f"hide {BATCH} ids p99 {f_hide.p99:.2f} ms (target <= {TARGET_ACTION_P99_MS} ms): "
        f"{verdict(f_hide.p99 <= TARGET_ACTION_P99_MS)} "
        f"(its statement alone: p50 {s_hide.p50:.2f} ms, p99 {s_hide.p99:.2f} ms)"
    )

    def pair(fig: Figures) -> dict[str, float]:
        return {"p50_ms": fig.p50, "p99_ms": fig.p99}

    return {
        "posts": POSTS,
        "page_size": PAGE,
        "pages": len(pages),
        "requests": requests,
        "first": pair(f_first),
        "first_sql": pair(s_first),
        "last": pair(f_last),
        "last_sql": pair(s_last),
        "last_items": POSTS % PAGE,
        "hide": pair(f_hide),
        "hide_sql": pair(s_hide),
        "unhide": pair(f_unhide),
        "depths": [
            {"page": d, "items": items, "http": pair(h), "sql": pair(q)}
            for d, items, h, q in depth_rows
        ],
    }


async def main_async(requests: int, show_plan: bool, depths: list[int]) -> dict[str, Any]:
    async with fresh_stack() as settings:
        return await bench(settings, requests, show_plan, depths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.posts", description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per series")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE plans")
    parser.add_argument(
        "--depths", default="1,5,10,19", help="page numbers timed for latency by page depth"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",") if d.strip()]
    figures = asyncio.run(main_async(max(args.requests, 1), args.explain, depths))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
