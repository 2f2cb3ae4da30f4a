"""Worker memory while building a BDR with a huge comment thread: `python -m bench.worker_memory`.

The real worker builds a BDR of one artwork with 200,000 comments of ~2 KB (and reactions),
after a small warm-up one; its RSS is read every 5 ms. Target: growth ≤ 20 MB over the warm RSS.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import zipfile
from typing import Any

import asyncpg

from bench import cli
from bench.job import driving
from pmd_service.core.settings import Settings
from pmd_service.host.vault import bdr_zip_path
from support.measures import PeakRss, rss_kb
from support.seeding import Factory
from support.stack import fresh_stack, service_env, start_worker, stop

TARGET_GROWTH_MB = 20

# ~2 KB of text per comment, different in every row (deflate still finds its repeats).
SQL_COMMENTS = """
INSERT INTO comments (post_id, author_id, body, created_at, hidden_by_mod)
SELECT $1::int, CASE WHEN g % 7 = 0 THEN NULL ELSE $2::int END,
       left(repeat(md5(g::text) || ' ' || md5((g * 31)::text) || ' ✨ ', 32), 2000),
       timestamptz '2024-01-01' + make_interval(secs => g / 3), g % 50 = 0
FROM generate_series(1, $3::int) g
"""
SQL_REACTIONS = """
INSERT INTO reactions (post_id, emoji) SELECT $1, (ARRAY['👍','❤️','🔥'])[g % 3 + 1]
FROM generate_series(1, 3000) g
"""


async def seed(conn: asyncpg.Connection, settings: Settings, comments: int) -> tuple[Any, ...]:
    """The user, the warm-up's post with 100 comments, the big thread's, its visible comments."""
    seeder = Factory(conn, settings)
    user = await seeder.user("chatty")
    warm, big = [(await seeder.post(user, title=title, shard="ab",
                                    data=b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes * 256)).id
                 for title in ("warm-up", "the big thread")]  # fmt: skip
    started = time.perf_counter()
    await conn.execute(SQL_COMMENTS, warm, user.id, 100, timeout=600)
    await conn.execute(SQL_COMMENTS, big, user.id, comments, timeout=600)
    await conn.execute(SQL_REACTIONS, big)
    await conn.execute("ANALYZE comments")
    visible = await conn.fetchval(
        "SELECT count(*) FROM comments WHERE post_id = $1 AND NOT hidden_by_mod", big
    )
    print(f"seeded {comments:,} comments ({visible:,} visible) in "
          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    return user, warm, big, visible


async def run(comments: int) -> dict[str, Any]:
    async with fresh_stack() as settings:
        worker = start_worker(service_env(settings))
        try:
            async with driving(settings, worker.pid) as bdrs:
                user, warm, big, visible = await seed(bdrs.conn, settings, comments)
                await bdrs.bdr(user.id, user.sqid, [warm], comments=True)  # code paths loaded
                await asyncio.sleep(1.0)  # let the warm-up's garbage go
                baseline = rss_kb(worker.pid)
                started = time.perf_counter()
                with PeakRss(lambda: rss_kb(worker.pid), 0.005, baseline) as rss:
                    built = await bdrs.bdr(user.id, user.sqid, [big], comments=True, keep=True)
                seconds = time.perf_counter() - started
                after = rss_kb(worker.pid)
        finally:
            stop(worker)
        with zipfile.ZipFile(bdr_zip_path(settings.bdr_path, built["file_path"])) as archive:
            assert archive.testzip() is None
            info = archive.getinfo("comments.json")
            with archive.open(info) as f:
                in_zip = sum(len(t) for t in json.load(f)["comments_by_artwork"].values())
        assert in_zip == visible, (in_zip, visible)
    growth_mb = (rss.peak - baseline) / 1024
    print(f"worker RSS: {baseline / 1024:.1f} MB after the warm-up, peak "
          f"{rss.peak / 1024:.1f} MB during the build, {after / 1024:.1f} MB after it: growth "
          f"{growth_mb:.1f} MB for {in_zip:,} comments (comments.json "
          f"{info.file_size / 1e6:.0f} MB, built in {seconds:.1f} s; target <= "
          f"{TARGET_GROWTH_MB} MB)")  # fmt: skip
    return {
        "comments": comments,
        "visible_comments": visible,
        "comments_json_bytes": info.file_size,
        "zip_bytes": built["bytes"],
        "baseline_rss_mb": baseline / 1024,
        "peak_rss_mb": rss.peak / 1024,
        "after_rss_mb": after / 1024,
        "growth_mb": growth_mb,
        "build_s": seconds,
    }


def main() -> None:
    cli.run_main("worker_memory", __doc__, run, "--comments", 200_000)


if __name__ == "__main__":
    main()
