"""The WAL one client's bulk writes can cause under the budget of changed posts, against a bare
UPDATE of the same rows: `python -m bench.write_budget`."""

from __future__ import annotations

import time
from typing import Any

from bench import cli
from bench.posts import served
from pmd_service.core.settings import Settings
from support.seeding import bulk_users
from support.stack import connected

TAGS = [f"{n:02d}" + "t" * 62 for n in range(64)]
# Before the budget: 120 actions a minute (BULK_ACTIONS_PER_MINUTE) of BULK_MAX_POSTS each.
ACTIONS_A_MINUTE, DEFAULT_POSTS = 120, 20_000
SQL_SEED = """
INSERT INTO posts (storage_key, storage_shard, owner_id, title, hashtags, created_at)
SELECT gen_random_uuid(), 'wb', $1, 'Budget ' || g,
       $2::varchar[] || ARRAY[CASE WHEN g % 2 = 0 THEN 'halfa' ELSE 'halfb' END]::varchar[],
       now() - g * interval '1 second'
FROM generate_series(1, $3) g
"""
SQL_LSN = "SELECT pg_current_wal_lsn()"
SQL_WAL_SINCE = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::bigint"
SQL_BARE = "UPDATE posts SET hidden_by_user = $2 WHERE owner_id = $1 AND $3 = ANY(hashtags)"


def budgets(posts: int) -> dict[str, int]:
    """The settings that make `posts` what 20,000 is at the defaults."""
    return {
        "bulk_max_posts": posts // 2,
        "bulk_changed_posts_per_minute": 2 * posts,
        "bulk_changed_posts_per_hour": 6 * posts,
        "bulk_actions_per_minute": ACTIONS_A_MINUTE,
    }


async def bench(settings: Settings, posts: int) -> dict[str, Any]:
    scaled = cli.replace(settings, **budgets(posts))
    async with connected(settings.database_url, "pmd-bench-seed") as conn:
        (artist,) = await bulk_users(conn, settings, "budget", 1)
        await conn.execute(SQL_SEED, artist.id, TAGS, posts)
        await conn.execute("VACUUM ANALYZE posts")
    half = posts // 2
    steps = [(action, tag) for action in ("hide", "unhide") for tag in ("halfa", "halfb")]
    async with served(scaled) as http, connected(settings.database_url, "pmd-bench-wal") as conn:

        async def act(action: str, tag: str) -> tuple[dict[str, Any] | None, Any, float]:
            """The refusal (None: done), the reply and its seconds."""
            body = {"action": action, "filter": {"hashtag": [tag]}, "expect_count": half}
            started = time.perf_counter()
            async with http.post("/api/pmd/action", json=body, headers=artist.auth) as resp:
                got = await resp.json()
            took = time.perf_counter() - started
            if resp.status == 200:
                return None, got, took
            return {"status": resp.status, "code": got["code"], **got["details"]}, got, took

        # The first minute: toggles as fast as the service answers, until refused.
        await conn.execute("CHECKPOINT")  # every page's first change: its full image
        start = await conn.fetchval(SQL_LSN)
        changed, took = 0, 0.0
        for action, tag in steps * 2:
            refused, body, seconds = await act(action, tag)
            if refused:
                break
            changed += body["changed_count"]
            took += seconds
        # Two toggles of every post pass the minute's budget: the service must have refused.
        assert refused is not None, f"{changed:,} posts changed in a minute, none refused"
        service_wal = await conn.fetchval(SQL_WAL_SINCE, start)
        # The same changes by a bare UPDATE: the baseline.
        await conn.execute("UPDATE posts SET hidden_by_user = false")
        await conn.execute("CHECKPOINT")
        start = await conn.fetchval(SQL_LSN)
        for action, tag in steps:
            await conn.execute(SQL_BARE, artist.id, action == "hide", tag)
        bare_wal = await conn.fetchval(SQL_WAL_SINCE, start)
        # The hour: rounds a minute apart (spends moved back) until the hour's budget refuses.
        toggles = 1 if changed >= 2 * posts else 0
        hourly: dict[str, Any] | None = None
        while hourly is None and toggles < 100:
            await conn.execute("UPDATE write_spends SET spent_at = spent_at - interval '61 s'")
            for action, tag in steps:
                if hourly := (await act(action, tag))[0]:
                    break
            else:
                toggles += 1
        assert hourly is not None, f"{toggles} toggles of every post in an hour, none refused"
    per_post = service_wal / changed
    figures = {
        "posts": posts,
        "tags": len(TAGS),
        "budgets": budgets(posts),
        "minute": {
            "changed": changed,
            "actions": changed // half,
            "seconds": took,
            "wal_bytes": service_wal,
            "refused": refused,
        },
        "bare_wal_bytes": bare_wal,
        "ratio": service_wal / bare_wal,
        "wal_per_post": per_post,
        # At the defaults, whatever the run's size: the budget times what a post's change writes.
        "defaults": {
            "wal_a_minute": per_post * 40_000,
            "wal_an_hour": per_post * 120_000,
            "unbudgeted_wal_a_minute": per_post * ACTIONS_A_MINUTE * 10_000,
            "toggles_an_hour": 120_000 // (2 * DEFAULT_POSTS),
        },
        "toggles_an_hour": toggles,
        "hour_refused": hourly,
    }
    cli.show(f"one client's writes, {posts:,} posts with {len(TAGS)} tags", figures)
    return figures


def section(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures in MiB and GiB, for the templates."""
    d = figures["defaults"]
    return figures | {
        "mib_a_minute": d["wal_a_minute"] / 2**20,
        "gib_an_hour": d["wal_an_hour"] / 2**30,
        "unbudgeted_gib_a_minute": d["unbudgeted_wal_a_minute"] / 2**30,
        "kib_per_post": figures["wal_per_post"] / 1024,
    }


if __name__ == "__main__":
    parser = cli.parser("write_budget", __doc__)
    parser.add_argument(
        "--posts", type=int, default=DEFAULT_POSTS, help="the account's artworks (even)"
    )
    args = parser.parse_args()
    cli.save(args.json, cli.in_stack(bench, max(4, args.posts // 2 * 2)))
