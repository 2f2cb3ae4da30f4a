"""Migrating beside a big host: `python -m bench.host_migrate [--posts 1000000]`.

The service's migrations applied to the host's schema (tests/host_schema.sql) with N posts and
with none, while the host updates one post at a time: both times, their ratio, and the host's
longest write while migrating against before. Neither should depend on N.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench import cli
from pmd_service.core.migrate import migrate
from pmd_service.core.settings import Settings
from support.stack import CHECKOUT, create_database, drop_database

SQL_USERS = """
INSERT INTO users (user_key, handle, handle_normalized, email)
SELECT gen_random_uuid(), 'u' || g, 'u' || g, 'u' || g || '@example.com'
FROM generate_series(1, 1000) g
"""
SQL_POSTS = """
INSERT INTO posts (storage_key, storage_shard, owner_id, title, created_at)
SELECT gen_random_uuid(), '24/07', 1 + g % 1000, 'Art ' || g, now() - g * interval '1 second'
FROM generate_series($1::int, $2::int) g
"""


async def host_database(admin_url: str, posts: int) -> str:
    """A new database with the host's schema, 1,000 users and `posts` posts: its URL."""
    url = await create_database(admin_url, f"pmd_bench_host_{uuid.uuid4().hex[:8]}",
                                search_path=False)  # fmt: skip
    conn = await asyncpg.connect(url)
    try:
        await conn.execute((CHECKOUT / "tests" / "host_schema.sql").read_text("utf-8"))
        await conn.execute(SQL_USERS)
        for start in range(1, posts + 1, 200_000):
            await conn.execute(SQL_POSTS, start, min(start + 199_999, posts))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return url


async def host_writes(url: str, stop: asyncio.Event, latencies: list[float]) -> None:
    """The host at work: one post updated at a time, each in its own transaction."""
    conn = await asyncpg.connect(url)
    try:
        post_id = await conn.fetchval("SELECT min(id) FROM posts") or 0
        while not stop.is_set():
            t = time.perf_counter()
            await conn.execute(
                "UPDATE posts SET view_count = view_count + 1 WHERE id = $1", post_id
            )
            latencies.append(time.perf_counter() - t)
            await asyncio.sleep(0.002)
    finally:
        await conn.close()


async def measure(url: str) -> dict[str, float]:
    # Only the schemas and search path matter here: nothing connects to Redis.
    settings = Settings(database_url=url, redis_url="redis://unused", jwt_secret_key="x" * 40)
    writes: list[float] = []
    stop = asyncio.Event()
    writer = asyncio.create_task(host_writes(url, stop, writes))
    await asyncio.sleep(0.5)
    migrator = await asyncpg.connect(url)
    try:
        before = writes[:]
        t = time.perf_counter()
        applied = await migrate(migrator, settings)
        seconds = time.perf_counter() - t
        during = writes[len(before) :]
        assert applied and "standalone host tables" not in applied, applied
    finally:
        await migrator.close()
        stop.set()
        await writer
    return {
        "migrate_s": seconds,
        "writes_during": len(during),
        "longest_write_during_ms": max(during, default=0.0) * 1000,
        "longest_write_before_ms": max(before, default=0.0) * 1000,
        "median_write_before_ms": statistics.median(before) * 1000 if before else 0.0,
    }


async def run(posts: int) -> dict[str, Any]:
    from pmd_service.dev.embedded import start_postgres

    admin_url = os.environ.get("DATABASE_URL") or start_postgres(CHECKOUT / ".data/bench/pg")
    t = time.perf_counter()
    big = await host_database(admin_url, posts)
    seeded_s = time.perf_counter() - t
    empty = await host_database(admin_url, 0)
    try:
        e, loaded = await measure(empty), await measure(big)
    finally:
        for url in (big, empty):
            await drop_database(admin_url, urlsplit(url).path.lstrip("/"))
    ratio = loaded["migrate_s"] / e["migrate_s"]
    print(f"host database with {posts:,} posts: migrate {loaded['migrate_s'] * 1000:.0f} ms with "
          f"them, {e['migrate_s'] * 1000:.0f} ms with none ({ratio:.2f}×); longest host write "
          f"while migrating {loaded['longest_write_during_ms']:.1f} ms, before "
          f"{loaded['longest_write_before_ms']:.1f} ms")  # fmt: skip
    return {"posts": posts, "seeded_s": seeded_s, "empty": e, "loaded": loaded, "ratio": ratio}


def main() -> None:
    cli.run_main("host_migrate", __doc__, run, "--posts", 1_000_000)


if __name__ == "__main__":
    main()
