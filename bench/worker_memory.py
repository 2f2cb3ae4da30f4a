"""Worker memory while building a BDR with a huge comment thread: `python -m bench.worker_memory`.

Not a test: prints figures, exits 0. A fresh database holds one artwork with 200,000 visible
comments of ~2 KB (plus hidden ones and reactions); the real worker process
(`arq worker.WorkerSettings`) first builds a small BDR with comments (so every code path is
loaded and warm), then the big one with `include_comments` and `include_reactions`. The
worker's RSS is read from /proc every 5 ms during the big build: growth = peak − the RSS it
settled at after the warm-up. Target: growth ≤ 20 MB. (Before comments were streamed, 20,000
comments took a worker from 49.5 MB to 189 MB.)
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
from pmd_service.bdr.queue import enqueue_bdr
from pmd_service.core.db import connect
from pmd_service.core.queue import create_redis
from pmd_service.core.settings import Settings
from pmd_service.host.vault import bdr_zip_path
from support.measures import PeakRss, rss_kb
from support.seeding import Factory
from support.stack import fresh_stack, service_env, start_worker, stop

TARGET_GROWTH_MB = 20
SAMPLE_EVERY = 0.005

# ~2 KB of text per comment, different in every row (deflate still finds its repeats).
SQL_COMMENTS = """
INSERT INTO comments (post_id, author_id, body, created_at, hidden_by_mod)
SELECT $1::int, CASE WHEN g % 7 = 0 THEN NULL ELSE $2::int END,
       left(repeat(md5(g::text) || ' ' || md5((g * 31)::text) || ' ✨ ', 32), 2000),
       timestamptz '2024-01-01' + make_interval(secs => g / 3), g % 50 = 0
FROM generate_series(1, $3::int) g
"""
SQL_BDR = """
INSERT INTO batch_download_requests
    (user_id, user_sqid, post_ids, artwork_count, include_comments, include_reactions)
VALUES ($1, $2, $3, cardinality($3::int[]), true, true)
RETURNING id
"""
SQL_STATUS = "SELECT status, file_path, error_message FROM batch_download_requests WHERE id = $1"


async def seed(conn: asyncpg.Connection, settings: Settings, comments: int) -> dict[str, Any]:
    seeder = Factory(conn, settings)
    chatty = await seeder.user("chatty")
    user = chatty.id
    posts = [(await seeder.post(chatty, title=title, shard="ab",
                                data=b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes * 256)).id
             for title in ("warm-up", "the big thread")]  # fmt: skip
    started = time.perf_counter()
    await conn.execute(SQL_COMMENTS, posts[0], user, 100, timeout=600)
    await conn.execute(SQL_COMMENTS, posts[1], user, comments, timeout=600)
    await conn.execute(
        "INSERT INTO reactions (post_id, emoji) SELECT $1, (ARRAY['👍','❤️','🔥'])[g % 3 + 1] "
        "FROM generate_series(1, 3000) g",
        posts[1],
    )
    await conn.execute("ANALYZE comments")
    visible = await conn.fetchval(
        "SELECT count(*) FROM comments WHERE post_id = $1 AND NOT hidden_by_mod", posts[1]
    )
    text_mb = await conn.fetchval(
        "SELECT sum(octet_length(body)) / 1e6 FROM comments WHERE post_id = $1", posts[1]
    )
    print(f"seeded {comments:,} comments ({visible:,} visible, {text_mb:.0f} MB of text) "
          f"in {time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    return {"user": user, "user_sqid": chatty.sqid, "posts": posts, "visible": visible}


async def build(conn: asyncpg.Connection, settings: Settings, bdr_id: uuid.UUID) -> str:
    redis = create_redis(settings.redis_url or "")
    try:
        await enqueue_bdr(redis, bdr_id)
    finally:
        await redis.aclose()
    while True:
        row = await conn.fetchrow(SQL_STATUS, bdr_id)
        assert row is not None
        if row["status"] == "ready":
            return str(row["file_path"])
        assert row["status"] in ("pending", "processing"), dict(row)
        await asyncio.sleep(0.1)


async def run(comments: int) -> dict[str, Any]:
    async with fresh_stack() as settings:
        conn = await connect(settings.database_url or "", "pmd-bench")
        worker = None
        try:
            seeded = await seed(conn, settings, comments)
            user, user_sqid, posts = seeded["user"], seeded["user_sqid"], seeded["posts"]
            warm = await conn.fetchval(SQL_BDR, user, user_sqid, [posts[0]])
            worker = start_worker(service_env(settings))
            await build(conn, settings, warm)
            await asyncio.sleep(1.0)  # let the warm-up's garbage go
            baseline = rss_kb(worker.pid)
            # Inserted only now: the worker's sweep must not pick it up during the warm-up.
            big = await conn.fetchval(SQL_BDR, user, user_sqid, [posts[1]])
            started = time.perf_counter()
            with PeakRss(lambda: rss_kb(worker.pid), SAMPLE_EVERY, baseline) as rss:
                file_path = await build(conn, settings, big)
            peak = rss.peak
            seconds = time.perf_counter() - started
            after = rss_kb(worker.pid)
            zip_path = bdr_zip_path(settings.bdr_path, file_path)
            zip_bytes = zip_path.stat().st_size
            with zipfile.ZipFile(zip_path) as archive:
                info = archive.getinfo("comments.json")
                assert archive.testzip() is None
                with archive.open(info) as f:
                    thread = json.load(f)["comments_by_artwork"]
            in_zip = sum(len(t) for t in thread.values())
            assert in_zip == seeded["visible"], (in_zip, seeded["visible"])
            del thread
        finally:
            if worker is not None:
                stop(worker)
            await conn.close()
    growth_mb = (peak - baseline) / 1024
    figures = {
        "comments": comments,
        "visible_comments": seeded["visible"],
        "comments_json_bytes": info.file_size,
        "zip_bytes": zip_bytes,
        "baseline_rss_mb": baseline / 1024,
        "peak_rss_mb": peak / 1024,
        "after_rss_mb": after / 1024,
        "growth_mb": growth_mb,
        "build_s": seconds,
    }
    print(
        f"worker RSS: {baseline / 1024:.1f} MB after the warm-up, peak {peak / 1024:.1f} MB "
        f"during the build, {after / 1024:.1f} MB after it\n"
        f"growth {growth_mb:.1f} MB for {seeded['visible']:,} comments "
        f"(comments.json {info.file_size / 1e6:.0f} MB, built in {seconds:.1f} s; "
        f"target <= {TARGET_GROWTH_MB} MB: {'met' if growth_mb <= TARGET_GROWTH_MB else 'MISSED'})"
    )
    return figures


def main() -> None:
    cli.run_main("worker_memory", __doc__, run, "--comments", 200_000)


if __name__ == "__main__":
    main()
