"""The WAL each budget of changed posts allows: one artist's hide and unhide by filter of N of
the host's widest posts, each after a CHECKPOINT (every page's first change writes its image)."""

from __future__ import annotations

import sys
import time
from typing import Any

from bench import cli
from bench.posts import served
from bench.runner import Bench, run_one
from bench.write_budget import SQL_LSN, SQL_WAL_SINCE
from pmd_service.core.settings import Settings
from support.seeding import bulk_users
from support.stack import connected

DEFAULT_POSTS, CI_POSTS = 10_000, 200
TITLE, DESCRIPTION, TAGS, TAG = 128, 5_000, 64, 64  # characters, the host's most
# Hex digits of md5s: no run for pglz to compress, so every byte is kept, as in the widest row.
SQL_SEED = """
INSERT INTO posts (storage_key, storage_shard, owner_id, title, description, hashtags, created_at)
SELECT gen_random_uuid(), 'wal', $1,
       left((SELECT string_agg(md5(g || ':t' || i), '') FROM generate_series(1, $2 / 32 + 1) i),
            $2),
       left((SELECT string_agg(md5(g || ':d' || i), '') FROM generate_series(1, $3 / 32 + 1) i),
            $3),
       ARRAY(SELECT left(md5(g || ':a' || i) || md5(g || ':b' || i), $5)
             FROM generate_series(1, $4) i)::varchar[],
       now() - g * interval '1 second'
FROM generate_series(1, $6) g
"""
SQL_ROW_BYTES = "SELECT avg(pg_column_size(p.*))::float8 FROM posts p WHERE owner_id = $1"


def budgets(settings: Settings) -> dict[str, int]:
    """Each budget of changed posts, in posts."""
    return {
        "per_person_minute": settings.bulk_changed_posts_per_minute,
        "per_person_hour": settings.bulk_changed_posts_per_hour,
        "site_minute": settings.bulk_changed_posts_site_per_minute,
    }


async def bench(settings: Settings, posts: int) -> dict[str, Any]:
    async with connected(settings.database_url, "pmd-bench-seed") as conn:
        (artist,) = await bulk_users(conn, settings, "wal", 1)
        await conn.execute(SQL_SEED, artist.id, TITLE, DESCRIPTION, TAGS, TAG, posts)
        await conn.execute("VACUUM ANALYZE posts")
        row_bytes = await conn.fetchval(SQL_ROW_BYTES, artist.id)
    steps: dict[str, dict[str, Any]] = {}
    both = 2 * posts  # room for the run's two actions
    roomy = cli.roomy(
        settings,
        bulk_max_posts=posts,
        bulk_changed_posts_per_minute=both,
        bulk_changed_posts_per_hour=both,
        bulk_changed_posts_site_per_minute=both,
    )
    async with served(roomy) as http, connected(settings.database_url, "pmd-bench-wal") as conn:
        for action, hidden in (("hide", False), ("unhide", True)):
            body = {"action": action, "filter": {"hidden": hidden}, "expect_count": posts}
            await conn.execute("CHECKPOINT")
            start = await conn.fetchval(SQL_LSN)
            started = time.perf_counter()
            async with http.post("/api/pmd/action", json=body, headers=artist.auth) as resp:
                got = await resp.json()
            seconds = time.perf_counter() - started
            wal = await conn.fetchval(SQL_WAL_SINCE, start)
            assert resp.status == 200, got
            assert got["changed_count"] == posts, got
            steps[action] = {
                "changed": posts,
                "wal_bytes": wal,
                "wal_per_post": wal / posts,
                "seconds": seconds,
            }
    per_post = max(step["wal_per_post"] for step in steps.values())
    figures = {
        "posts": posts,
        "row": {"title": TITLE, "description": DESCRIPTION, "tags": TAGS, "tag": TAG},
        "row_bytes": row_bytes,
        **steps,
        "wal_per_post": per_post,
        "budgets": {
            name: {"posts": n, "wal_bytes": per_post * n} for name, n in budgets(settings).items()
        },
    }
    cli.show(f"{posts:,} of the widest posts, hidden then unhidden by filter", figures)
    return figures


if __name__ == "__main__":
    parser = cli.parser("wal_budget", __doc__)
    parser.add_argument("--posts", type=int, default=DEFAULT_POSTS, help="the artist's posts")
    parser.add_argument("--ci", action="store_true", help=f"{CI_POSTS} posts, nothing saved")
    parser.add_argument(
        "--save", action="store_true", help="run it as bench/runner does and keep its figures"
    )
    args = parser.parse_args()
    if args.save:
        why = run_one(Bench("wal_budget", ("--posts", str(args.posts)), 900))
        sys.exit(f"wal_budget: {why}" if why else 0)
    posts = CI_POSTS if args.ci else args.posts
    cli.save(args.json, cli.in_stack(bench, posts))
