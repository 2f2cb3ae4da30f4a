"""The attack of the fourth hardening review, against a real server process: one export with
thousands of skipped artworks and many parts, progress written a thousand times. Before
migration 0008 each event carried every skipped entry and every part (hundreds of KB here), the
events wrote 1.2 GB into `stream_events` and every server, watching or not, grew past a GB.

A memory bound, not a timing one: the server's RSS must stay within a few tens of MB of where
it was, and the events within a few MB, while it read every one of them (the owner's stream
saw the last)."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
import asyncpg

from pmd_service.core.settings import Settings
from support.measures import rss_kb
from support.seeding import Factory
from support.sse import SSE, open_stream
from support.stack import free_port, service_env, start_server, stop

SKIPPED, PARTS, STEPS = 5000, 60, 1000
GROWTH_LIMIT_KB = 40 * 1024
TABLE_LIMIT = 8 * 1024 * STEPS  # under 8 KB an event


async def test_an_export_with_thousands_of_skipped_artworks_grows_no_server(
    settings: Settings, pool: asyncpg.Pool, factory: Factory, tmp_path: Path
) -> None:
    owner = await factory.user()
    export_id = uuid.uuid4()
    skipped = [
        {"post_id": 10**8 + i, "public_sqid": f"Sq{i:014d}", "reason": "file_missing"}
        for i in range(SKIPPED)
    ]
    await pool.execute(
        "INSERT INTO exports (id, user_id, user_sqid, status, part_bytes, artwork_count, "
        "skipped) VALUES ($1, $2, $3, 'processing', 1048576, $4, $5::jsonb)",
        export_id,
        owner.id,
        owner.sqid,
        SKIPPED + PARTS,
        skipped,
    )
    await pool.execute(
        "INSERT INTO export_parts (export_id, number, status, post_ids, artwork_count, "
        "estimated_bytes, file_size_bytes, sha256) SELECT $1, n, 'ready', '{1}', 1, 1000, 1000, "
        "repeat('ab', 32) FROM generate_series(1, $2::int) AS n",
        export_id,
        PARTS,
    )
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = start_server(service_env(settings, tmp_path), port, log)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}{SSE}"
            async with open_stream(http, url, owner.auth) as stream:
                await stream.opening()
                before_kb = rss_kb(server.pid)
                first = await pool.fetchval("SELECT coalesce(max(id), 0) FROM stream_events")
                async with pool.acquire() as conn:
                    for step in range(1, STEPS + 1):
                        await conn.execute(
                            "UPDATE exports SET progress_done = $2 WHERE id = $1", export_id, step
                        )
                await stream.until(
                    lambda m: m.event == "export_update" and m.json()["progress"]["done"] == STEPS,
                    within=120,
                )
                after_kb = rss_kb(server.pid)
        written = await pool.fetchval(
            "SELECT sum(octet_length(payload::text)) FROM stream_events WHERE id > $1", first
        )
    finally:
        stop(server)
        log.close()
    print(
        f"{STEPS} events of an export with {SKIPPED} skipped artworks and {PARTS} parts: "
        f"{written / 1024:.0f} KB of events, server RSS {before_kb / 1024:.1f} -> "
        f"{after_kb / 1024:.1f} MB"
    )
    assert written < TABLE_LIMIT
    assert after_kb - before_kb < GROWTH_LIMIT_KB
