"""The whole download job through the real worker: claim → ready, against its floor.

`python -m bench.job [--rounds 7]`. Not a test: prints figures, exits 0. A fresh database holds
two users: one with 128 artworks of ~1 MB (noise PNGs: they do not compress, like detailed
artwork) and one with 128 small pixel-art PNGs. The real worker process (`arq
worker.WorkerSettings`) builds their download requests, enqueued as the server enqueues them;
each job's claim → ready is read from its row (`completed_at − started_at`: the claim sets
`started_at`, the publish sets `completed_at`). In the same run and on the same files, rounds
alternating: the required work done plainly in one pass (read, CRC-32, SHA-256, write, fsync:
bench.zip's `required_floor`) and the original algorithm (copy to a temp dir, then zipfile
DEFLATED: bench.zip's `seed_algorithm`).

Targets: 128 × 1 MB at ≤ 1.5× the floor and ≥ 25× faster than the original algorithm; 128
small artworks ≤ 30 ms from claim to ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import statistics
import time
from pathlib import Path
from typing import Any

from bench import cli
from bench.zip import FILES, make_large_pngs, make_small_pixel_art, required_floor, seed_algorithm
from pmd_service.bdr.queue import enqueue_bdr
from pmd_service.core.db import connect
from pmd_service.core.queue import create_redis
from pmd_service.core.settings import Settings
from pmd_service.sse.hub import CHANNEL
from support.seeding import Factory
from support.stack import fresh_stack, service_env, start_worker, stop

TARGET_LARGE_RATIO = 1.5
TARGET_VS_ORIGINAL = 25.0
TARGET_SMALL_MS = 30.0
SQL_ROW = """
SELECT status, extract(epoch FROM completed_at - started_at)::float8 AS seconds
FROM batch_download_requests WHERE id = $1
"""


async def seed_user(
    conn: Any, settings: Settings, handle: str, files: list[Path]
) -> tuple[int, list[int]]:
    """A user whose artworks are `files`, in the vault as the host lays it out."""
    seed = Factory(conn, settings)
    owner = await seed.user(handle)
    posts = [await seed.post(owner, title=f"{handle} {i}", data=source.read_bytes(),
                             shard=f"{i % 64:02x}/{i * 7 % 64:02x}")
             for i, source in enumerate(files)]  # fmt: skip
    return owner.id, [p.id for p in posts]


async def one_job(
    conn: Any, redis: Any, owner: int, post_ids: list[int], doorbell: asyncio.Queue[str]
) -> float:
    """Enqueue one BDR as the server does; its claim → ready once the worker is done (s).

    The row is read when the events' NOTIFY rings (as the server's SSE hub learns of changes),
    not polled: polling every few ms took CPU from the two cores the job runs on."""
    bdr_id = await conn.fetchval(
        "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count) "
        "VALUES ($1, $2, cardinality($2::int[])) RETURNING id",
        owner, post_ids,
    )  # fmt: skip
    await enqueue_bdr(redis, bdr_id)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        row = await conn.fetchrow(SQL_ROW, bdr_id)
        if row["status"] == "ready":
            seconds: float = row["seconds"]
            return seconds
        assert row["status"] in ("pending", "processing"), row["status"]
        with contextlib.suppress(TimeoutError):  # a ring missed: read the row anyway
            await asyncio.wait_for(doorbell.get(), timeout=1.0)
    raise RuntimeError(f"BDR {bdr_id} not ready within 120 s")


def _sha256(contents: list[bytes]) -> None:
    digest = hashlib.sha256()
    for data in contents:
        digest.update(data)


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


async def run(rounds: int) -> dict[str, Any]:
    async with fresh_stack() as settings:
        sources = settings.bdr_path.parent / "sources"
        large_files = make_large_pngs(sources / "large", FILES)
        small_files = make_small_pixel_art(sources / "small", FILES)
        conn = await connect(settings.database_url, "pmd-bench")
        listener = await connect(settings.database_url, "pmd-bench-listen")
        doorbell: asyncio.Queue[str] = asyncio.Queue()
        await listener.add_listener(CHANNEL, lambda *args: doorbell.put_nowait(args[3]))
        redis = create_redis(settings.redis_url)
        worker = start_worker(service_env(settings, BDR_DAILY_LIMIT="10000"))
        scratch = settings.bdr_path.parent / "scratch"
        scratch.mkdir()
        figures: dict[str, Any] = {}
        try:
            for name, files in (("large", large_files), ("small", small_files)):
                owner, post_ids = await seed_user(conn, settings, name, files)
                jobs, floors, originals = [], [], []
                for i in range(rounds + 2):  # two warm-up rounds
                    job = await one_job(conn, redis, owner, post_ids, doorbell)
                    floor = await asyncio.to_thread(
                        _timed, required_floor, files, scratch / "floor.bin"
                    )
                    original = await asyncio.to_thread(
                        _timed, seed_algorithm, files, scratch / "original.zip"
                    )
                    if i >= 2:
                        jobs.append(job)
                        floors.append(floor)
                        originals.append(original)
                # What no build can go below: the SHA-256 of every byte, on one core (already
                # in memory: no read, no write), after the alternating rounds.
                contents = [p.read_bytes() for p in files]
                hashes = [await asyncio.to_thread(_timed, _sha256, contents) for _ in range(rounds)]
                figures[name] = {
                    "files": len(files),
                    "sha256_s": min(hashes),
                    "bytes": sum(p.stat().st_size for p in files),
                    "job_s": statistics.median(jobs),
                    "job_max_s": max(jobs),
                    "floor_s": statistics.median(floors),
                    "original_s": statistics.median(originals),
                    "rounds": rounds,
                }
        finally:
            stop(worker)
            await redis.aclose()
            await listener.close()
            await conn.close()
    large, small = figures["large"], figures["small"]
    ratio = large["job_s"] / large["floor_s"]
    vs_original = large["original_s"] / large["job_s"]
    small_ms = small["job_s"] * 1000
    print(f"128 × ~1 MB ({large['bytes'] / 1e6:.0f} MB), medians of {rounds} jobs:")
    print(f"  claim → ready         {large['job_s'] * 1000:8.1f} ms")
    print(f"  floor (one pass)      {large['floor_s'] * 1000:8.1f} ms   job ÷ floor {ratio:.2f}"
          f" (target ≤ {TARGET_LARGE_RATIO}: {'met' if ratio <= TARGET_LARGE_RATIO else 'MISSED'})")  # fmt: skip
    print(f"  original algorithm    {large['original_s'] * 1000:8.1f} ms   {vs_original:.1f}× slower"
          f" than the job (target ≥ {TARGET_VS_ORIGINAL:.0f}: {'met' if vs_original >= TARGET_VS_ORIGINAL else 'MISSED'})")  # fmt: skip
    needed = large["original_s"] / TARGET_VS_ORIGINAL / large["floor_s"]
    print(f"  (the original algorithm took {large['original_s'] / large['floor_s']:.1f}× the"
          f" one-pass floor here: {TARGET_VS_ORIGINAL:.0f}× faster than it means {needed:.2f}×"
          " that floor; the job spreads the work over both cores, bound by the SHA-256 on one or by"
          " the disk's flush of the ZIP, whichever is slower)")  # fmt: skip
    print(
        f"  SHA-256 of the bytes alone, in memory, one core: {large['sha256_s'] * 1000:.1f} ms (best of {rounds})"
    )
    print(f"128 small ({small['bytes'] / 1e3:.0f} KB): claim → ready {small_ms:.1f} ms"
          f" (max {small['job_max_s'] * 1000:.1f}), floor {small['floor_s'] * 1000:.1f} ms"
          f" (target ≤ {TARGET_SMALL_MS:.0f} ms: {'met' if small_ms <= TARGET_SMALL_MS else 'MISSED'})")  # fmt: skip
    return figures


def main() -> None:
    cli.run_main("job", __doc__, run, "--rounds", 7)


if __name__ == "__main__":
    main()
