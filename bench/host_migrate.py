"""Migrating beside a big host: `python -m bench.host_migrate [--posts 1000000]`.

A database shaped as the host's own migrations make it (tests/host_schema.sql) with N posts, and
the host writing to it all along (one UPDATE of a post at a time, as its requests do). The
service's migrations are applied to it and, in the same run, to the same schema with no posts:
the figures are the time of each, their ratio, and the longest host write while migrating
against the longest before. Nothing the service creates touches a host table, so neither
should depend on N.
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

HOST_SCHEMA_SQL = CHECKOUT / "tests" / "host_schema.sql"

SQL_USERS = """
INSERT INTO users (user_key, handle, handle_normalized, email)
SELECT gen_random_uuid(), 'u' || g, 'u' || g, 'u' || g || '@example.com'
FROM generate_series(1, $1) g
"""
SQL_POSTS = """
INSERT INTO posts (storage_key, storage_shard, owner_id, title, created_at)
SELECT gen_random_uuid(), '24/07', 1 + (g % $2::int), 'Art ' || g, now() - g * interval '1 second'
FROM generate_series($1::int, $1::int + $3::int - 1) g
"""


async def _fresh(admin_url: str, posts: int, users: int = 1000) -> str:
    name = f"pmd_bench_host_{uuid.uuid4().hex[:8]}"
    url = await create_database(admin_url, name, search_path=False)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(HOST_SCHEMA_SQL.read_text("utf-8"))
        await conn.execute(SQL_USERS, users)
        step = 200_000
        for start in range(1, posts + 1, step):
            await conn.execute(SQL_POSTS, start, users, min(step, posts - start + 1))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return url


async def _host_writes(url: str, stop: asyncio.Event, latencies: list[float]) -> None:
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


async def _measure(url: str) -> dict[str, float]:
    # Only the schemas and search path matter here: nothing connects to Redis.
    settings = Settings(database_url=url, redis_url="redis://unused", jwt_secret_key="x" * 40)
    writes: list[float] = []  # each host write's latency, in order
    stop = asyncio.Event()
    writer = asyncio.create_task(_host_writes(url, stop, writes))
    await asyncio.sleep(0.5)
    migrator = await asyncpg.connect(url)
    try:
        started = len(writes)
        t = time.perf_counter()
        applied = await migrate(migrator, settings)
        seconds = time.perf_counter() - t
        during = writes[started:]
        assert applied and "standalone host tables" not in applied, applied
    finally:
        await migrator.close()
    stop.set()
    await writer
    quiet = writes[:started]
    return {
        "migrate_s": seconds,
        "writes_during": len(during),
        "longest_write_during_ms": max(during, default=0.0) * 1000,
        "longest_write_before_ms": max(quiet, default=0.0) * 1000,
        "median_write_before_ms": statistics.median(quiet) * 1000 if quiet else 0.0,
    }


async def bench(posts: int) -> dict[str, Any]:
    from pmd_service.dev.embedded import start_postgres

    admin_url = os.environ.get("DATABASE_URL") or start_postgres(
        CHECKOUT / ".data" / "bench" / "pg"
    )
    t = time.perf_counter()
    big = await _fresh(admin_url, posts)
    seeded_s = time.perf_counter() - t
    empty = await _fresh(admin_url, 0)
    try:
        baseline = await _measure(empty)
        loaded = await _measure(big)
    finally:
        for url in (big, empty):
            await drop_database(admin_url, urlsplit(url).path.lstrip("/"))
    return {
        "posts": posts,
        "seeded_s": seeded_s,
        "empty": baseline,
        "loaded": loaded,
        "ratio": loaded["migrate_s"] / baseline["migrate_s"],
    }


def main() -> None:
    parser = cli.parser("host_migrate", __doc__)
    parser.add_argument("--posts", type=int, default=1_000_000)
    args = parser.parse_args()
    figures = asyncio.run(bench(args.posts))
    e, big = figures["empty"], figures["loaded"]
    print(f"host database with {figures['posts']:,} posts: migrate {big['migrate_s'] * 1000:.0f} "
          f"ms with them, {e['migrate_s'] * 1000:.0f} ms with none ({figures['ratio']:.2f}×); "
          f"longest host write while migrating {big['longest_write_during_ms']:.1f} ms, before "
          f"{big['longest_write_before_ms']:.1f} ms")  # fmt: skip
    cli.save(args.json, figures)


if __name__ == "__main__":
    main()
