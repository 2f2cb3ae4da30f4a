"""A full export in parts through the real worker: `python -m bench.export [--quick]`.

Not a test: prints figures, exits 0. A fresh database holds one user with 3,000 artworks of
about 1 MB each (0.9 to 1.1 MB of random bytes: incompressible, like detailed PNGs), and one
with 8 for the warm-ups. The real worker process (`python -m pmd_service worker`) builds
exports of the 3,000 in parts of 256 MiB (the smallest EXPORT_MIN_PART_BYTES allows), inserted
and enqueued as the server does with the API's defaults, into the folder (BDR_PATH) and then
into SeaweedFS (BDR_STORE=s3://…, support/seaweed.py). In each store, after a warm-up BDR and
a warm-up export, each round runs:

1. BDRs of 128 of the same artworks (spread over the 3,000), one after another, the worker
   otherwise idle, each followed by its floor: the same files written plainly into one file
   (fsynced) or one object;
2. an export on its own (its files read once before, into the page cache, where the BDRs'
   128 always are), the worker's RSS read from /proc every 5 ms, then its floor: the same
   files written plainly into files (or objects) of 256 MiB;
3. the same BDRs again, idle;
4. another export, and while it builds its parts the same BDRs again, one after another.

The folder gets three rounds, SeaweedFS (about a minute an export on two cores) two; then, in
the folder, the control: the same BDRs while a second worker process (on another Redis
database, so the first never sees the job) builds the same export.

Figures, each a ratio within the run, in the same store, on the same files:

- throughput: the export's bytes ÷ its claim → ready, against the idle BDRs' bytes ÷ their
  claim → ready, each summed over all its builds (see `_aggregate`). Target ≥ 0.9×.
- memory: the worker's peak RSS during the first export on its own, minus its RSS after the
  warm-up. Target ≤ +30 MB. The same reading around each idle BDR before it says what a BDR
  alone takes. (Later exports start from the high-water of a BDR and an export built side by
  side, which the worker keeps: their peaks are saved, not judged.)
- BDRs first: a BDR's time to ready (its row's insert → ready) while an export builds in the
  same worker, against the same BDR with the worker idle (medians). Target ≤ 1.5×. Only BDRs
  that ran wholly inside the export's claim → ready count (their rows' times say so). The
  control gives the same figure with nothing holding the export back: if it passed too, this
  one would prove nothing.
- beside them: the worker's CPU time per GB (export ÷ BDR), the floors' own ratio (how much
  of a gap is the store's, writing 3 GB in a row against 128 MB), and the throughput ratio
  with that taken out (each side against its floor).

Checks that make a pass mean something: every export is ready with all 3,000 artworks and none
skipped, in as many parts as its bytes need, none over 256 MiB, each part's file (or object)
there with the size its row gives; one part per store is read back and its SHA-256 compared
with its row's; every BDR is ready with none skipped, its ZIP there with its row's size. Every
file the run writes (the vault, ZIPs, parts, floors, SeaweedFS's volumes and what `weed`
leaves under /tmp) is removed as soon as it has been checked, or at the end.

`--quick`: 300 artworks (2 parts), one round of 2 BDRs (folder) or 1 (SeaweedFS) each time,
in about a minute: a smoke test of the benchmark itself, its figures too few to go by.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import msgspec
import numpy as np
import obstore
from arq.connections import ArqRedis

from bench import cli
from bench.runner import service_versions
from pmd_service.bdr.files import ZipFiles
from pmd_service.bdr.queue import enqueue_bdr
from pmd_service.core.db import connect
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.queue import create_redis
from pmd_service.core.settings import Settings
from pmd_service.exports.queue import enqueue_export
from pmd_service.host.vault import artwork_path
from pmd_service.jobs.zip.build import PART_BYTES as ZIP_PART_BYTES
from pmd_service.jobs.zip.build import PARTS_IN_FLIGHT
from pmd_service.sse.hub import CHANNEL
from support.measures import PeakRss, cpu_seconds, rss_kb
from support.seaweed import (
    Seaweed,
    create_bucket,
    new_bucket_name,
    running_seaweed,
)
from support.stack import fresh_stack, service_env, start_worker, stop

ARTWORKS = 3000
QUICK_ARTWORKS = 300
WARM_ARTWORKS = 8
BDR_ARTWORKS = 128
PART_BYTES = 256 << 20
TARGET_THROUGHPUT = 0.9
TARGET_GROWTH_MB = 30.0
TARGET_BDR_SLOWDOWN = 1.5
SAMPLE_EVERY = 0.005
TRACE_EVERY = 0.5
# Between two BDRs (idle or during an export alike): the export gets the worker back meanwhile.
GAP_S = 0.5
# BDRs during an export start once it has built this share of its artworks (its plan is made,
# its parts are being built), and no more start past the second share: each should end before
# the export does.
BUSY_FROM, BUSY_UNTIL = 0.05, 0.8
WAIT_S = 600
# SeaweedFS's data folder with no ZIP left in it (its volumes' indexes and the filer's store).
SEAWEED_SETTLED_BYTES = 64 << 20
# Volumes of 256 MB SeaweedFS may grow: room for four exports of 3 GB and the BDRs around them
# even if no vacuumed volume took writes again (on disk only what is not yet vacuumed).
SEAWEED_VOLUMES = 128

SQL_BDR = """
INSERT INTO batch_download_requests (user_id, user_sqid, post_ids, artwork_count)
VALUES ($1, $2, $3, cardinality($3::int[]))
RETURNING id
"""
SQL_BDR_ROW = """
SELECT status, file_path, file_size_bytes, skipped, error_message, created_at, started_at,
       completed_at, extract(epoch FROM completed_at - created_at)::float8 AS to_ready_s,
       extract(epoch FROM completed_at - started_at)::float8 AS build_s
FROM batch_download_requests WHERE id = $1
"""
# As the server inserts one, with the API's defaults (comments and reactions included).
SQL_EXPORT = """
INSERT INTO exports (user_id, user_sqid, part_bytes, artwork_count)
VALUES ($1, $2, $3, $4)
RETURNING id
"""
SQL_EXPORT_ROW = """
SELECT status, artwork_count, progress_done, total_bytes, skipped, error_message, started_at,
       completed_at, extract(epoch FROM completed_at - started_at)::float8 AS build_s
FROM exports WHERE id = $1
"""
SQL_PARTS = """
SELECT number, status, artwork_count, file_path, file_size_bytes, sha256, completed_at
FROM export_parts WHERE export_id = $1 ORDER BY number
"""


# --- the data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    id: int
    sqid: str
    post_ids: list[int]  # newest first, as the export orders them
    paths: list[Path]  # their files, in the same order
    bytes: int


def _write_random(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"\x89PNG\r\n\x1a\n" + np.random.default_rng(seed).bytes(size - 8)
    path.write_bytes(data)


async def seed_owner(conn: asyncpg.Connection, settings: Settings, handle: str, n: int,
                     seed: int) -> Owner:  # fmt: skip
    """A user with `n` artworks of 0.9–1.1 MB of random bytes, in the vault as the host lays it
    out, each post a second older than the one before (the export's order is known)."""
    ids = PublicIds(settings.sqids_alphabet)
    owner: int = await conn.fetchval(
        "INSERT INTO users (handle, email) VALUES ($1::text, $1::text || '@bench') RETURNING id",
        handle,
    )
    await conn.execute("UPDATE users SET public_sqid = $2 WHERE id = $1", owner, ids.encode(owner))
    rng = random.Random(seed)
    keys = [uuid.uuid4() for _ in range(n)]
    shards = [f"{i % 64:02x}/{i * 7 % 64:02x}" for i in range(n)]
    sizes = [rng.randrange(900_000, 1_100_000) for _ in range(n)]
    now = datetime.now(UTC)
    created = [now - timedelta(seconds=i) for i in range(n)]
    rows = await conn.fetch(
        "INSERT INTO posts (storage_key, storage_shard, owner_id, title, created_at) "
        "SELECT k, s, $3, 'artwork ' || o, c "
        "FROM unnest($1::uuid[], $2::text[], $4::timestamptz[]) WITH ORDINALITY AS u(k, s, c, o) "
        "ORDER BY o RETURNING id",
        keys, shards, owner, created,
    )  # fmt: skip
    post_ids: list[int] = [r[0] for r in rows]
    await conn.execute(
        "UPDATE posts p SET public_sqid = u.q FROM unnest($1::int[], $2::text[]) AS u(i, q) "
        "WHERE p.id = u.i",
        post_ids, [ids.encode(p) for p in post_ids],
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO post_files (post_id, format, file_bytes, is_native) "
        "SELECT i, 'png', b, true FROM unnest($1::int[], $2::int[]) AS u(i, b)",
        post_ids, sizes,
    )  # fmt: skip
    vault = settings.vault_path
    paths = [artwork_path(vault, s, k, "png") for s, k in zip(shards, keys, strict=True)]
    with ThreadPoolExecutor(2) as pool:  # numpy's generator releases the GIL
        await asyncio.gather(*(
            asyncio.wrap_future(pool.submit(_write_random, p, size, seed * 1_000_000 + i))
            for i, (p, size) in enumerate(zip(paths, sizes, strict=True))
        ))  # fmt: skip
    await conn.execute("ANALYZE posts; ANALYZE post_files")
    return Owner(owner, ids.encode(owner), post_ids, paths, sum(sizes))


# --- the worker, as the server drives it -------------------------------------------------------


@dataclass(frozen=True)
class Requested:
    """An export just requested, and the worker's CPU time then."""

    id: uuid.UUID
    cpu_s: float


@dataclass
class Run:
    """What the rounds share: a connection, Redis, the events' doorbell, where the ZIPs go."""

    conn: asyncpg.Connection
    redis: ArqRedis
    doorbell: asyncio.Queue[str]
    zips: ZipFiles
    worker_pid: int

    async def until(self, sql: str, row_id: uuid.UUID, done: Callable[[asyncpg.Record], bool]
                    ) -> asyncpg.Record:  # fmt: skip
        """The row once `done(row)`: read again at each NOTIFY of the events (as the server's
        SSE hub learns of changes), or every second if one is missed. Polling every few ms took
        CPU from the two cores the worker builds on."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            while not self.doorbell.empty():
                self.doorbell.get_nowait()
            row = await self.conn.fetchrow(sql, row_id)
            assert row is not None
            if done(row):
                return row
            if row["status"] not in ("pending", "processing"):
                raise RuntimeError(f"{row_id}: {row['status']}: {row['error_message']}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.doorbell.get(), timeout=1.0)
        raise RuntimeError(f"{row_id} not done within {WAIT_S} s")

    async def bdr(self, owner: Owner, post_ids: list[int], min_bytes: int = 0) -> dict[str, Any]:
        """One BDR, requested as the server does, until ready; its times from its row; its ZIP
        checked (none skipped, at least `min_bytes`, there with its row's size) and removed."""
        cpu = cpu_seconds(self.worker_pid)
        bdr_id = await self.conn.fetchval(SQL_BDR, owner.id, owner.sqid, post_ids)
        await enqueue_bdr(self.redis, bdr_id)
        row = await self.until(SQL_BDR_ROW, bdr_id, lambda r: r["status"] == "ready")
        cpu = cpu_seconds(self.worker_pid) - cpu
        assert row["skipped"] == [] and row["file_size_bytes"] >= min_bytes, dict(row)
        stored = await self.zips.locate(row["file_path"])
        assert stored.size == row["file_size_bytes"], (stored.size, row["file_size_bytes"])
        await self.zips.remove(row["file_path"])
        return {
            "to_ready_s": row["to_ready_s"],
            "build_s": row["build_s"],
            "cpu_s": cpu,
            "bytes": row["file_size_bytes"],
            "started_at": row["started_at"].timestamp(),
            "completed_at": row["completed_at"].timestamp(),
        }

    async def request_export(self, owner: Owner, redis: ArqRedis | None = None) -> Requested:
        """`redis`: another queue than the worker's (the control's second worker)."""
        cpu = cpu_seconds(self.worker_pid)
        export_id: uuid.UUID = await self.conn.fetchval(
            SQL_EXPORT, owner.id, owner.sqid, PART_BYTES, len(owner.post_ids)
        )
        await enqueue_export(redis or self.redis, export_id)
        return Requested(export_id, cpu)

    async def export_done(self, export: Requested, owner: Owner, *, read_back: bool
                          ) -> dict[str, Any]:  # fmt: skip
        """The export once ready, checked (see the module's docstring), its parts removed."""
        export_id = export.id
        row = await self.until(SQL_EXPORT_ROW, export_id, lambda r: r["status"] == "ready")
        cpu = cpu_seconds(self.worker_pid) - export.cpu_s
        parts = await self.conn.fetch(SQL_PARTS, export_id)
        n = len(owner.post_ids)
        assert row["artwork_count"] == n and row["progress_done"] == n, dict(row)
        assert row["skipped"] == [], row["skipped"]
        assert sum(p["artwork_count"] for p in parts) == n
        sizes = [p["file_size_bytes"] for p in parts]
        assert sum(sizes) == row["total_bytes"] >= owner.bytes, (sum(sizes), row["total_bytes"])
        assert max(sizes) <= PART_BYTES and len(parts) >= -(-row["total_bytes"] // PART_BYTES)
        for part in parts:
            assert part["status"] == "ready", dict(part)
            stored = await self.zips.locate(part["file_path"])
            assert stored.size == part["file_size_bytes"], (stored.size, dict(part))
        if read_back:  # the bytes are there, and they are the ones the row vouches for
            part = parts[len(parts) // 2]
            digest = await self._sha256(part["file_path"], part["file_size_bytes"])
            assert digest == part["sha256"].strip(), (digest, part["sha256"])
        for part in parts:
            await self.zips.remove(part["file_path"])
        ends = [row["started_at"], *(p["completed_at"] for p in parts)]
        return {
            "part_s": [(b - a).total_seconds() for a, b in itertools.pairwise(ends)],
            "build_s": row["build_s"],
            "cpu_s": cpu,
            "bytes": row["total_bytes"],
            "parts": len(parts),
            "throughput_mb_s": row["total_bytes"] / row["build_s"] / 1e6,
            "started_at": row["started_at"].timestamp(),
            "completed_at": row["completed_at"].timestamp(),
        }

    async def _sha256(self, file_path: str, size: int) -> str:
        stored = await self.zips.locate(file_path)
        if stored.path is not None:
            return await asyncio.to_thread(_file_sha256, stored.path)
        digest = hashlib.sha256()
        async for chunk in self.zips.chunks(await self.zips.read(stored, 0, size), 1 << 20):
            digest.update(chunk)
        return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- one store ---------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _throughput(b: dict[str, Any]) -> float:
    return float(b["bytes"]) / float(b["build_s"]) / 1e6


def _aggregate(builds: list[dict[str, Any]]) -> float:
    """MB/s over all of them: their bytes ÷ their seconds. Not the median of each one's: the
    machine's speed swings 2-3× over tens of seconds (other work on it), and an export of ten
    seconds averages over the swings while the median of BDRs of a third of a second each
    picks the usual state, leaving the slow spells out."""
    return sum(float(b["bytes"]) for b in builds) / sum(float(b["build_s"]) for b in builds) / 1e6


def _cpu_per_gb(builds: list[dict[str, Any]]) -> float:
    return sum(float(b["cpu_s"]) for b in builds) / sum(float(b["bytes"]) for b in builds) * 1e9


def _read(group: list[Path]) -> Iterator[bytes]:
    for path in group:
        with open(path, "rb", buffering=0) as source:
            while chunk := source.read(1 << 20):
                yield chunk


def _read_all(paths: list[Path]) -> None:
    for _ in _read(paths):
        pass


def _floor(zips: ZipFiles, groups: list[list[Path]]) -> dict[str, float]:
    """The store's floor for the same bytes, with no ZIP, no hash, no job: each group of
    artworks written plainly as one file (1 MiB at a time, fsynced) or one object (a multipart
    upload with the build's part size and parts in flight), then removed. Seconds and bytes,
    as a build's."""
    size = 0
    started = time.perf_counter()
    for i, group in enumerate(groups):
        if zips.store is not None:
            key = f"floor/{i}.bin"
            obstore.put(zips.store, key, _read(group), use_multipart=True,
                        chunk_size=ZIP_PART_BYTES, max_concurrency=PARTS_IN_FLIGHT)  # fmt: skip
            size += obstore.head(zips.store, key)["size"]
            obstore.delete(zips.store, key)
            continue
        out = zips.root.parent / "floor.bin"
        with open(out, "wb", buffering=0) as target:
            for chunk in _read(group):
                target.write(chunk)
                size += len(chunk)
            os.fsync(target.fileno())
        out.unlink()
    return {"build_s": time.perf_counter() - started, "bytes": size}


@dataclass(frozen=True)
class Plan:
    """What one store runs: `rounds` of (BDRs, an export alone, BDRs, an export with BDRs
    beside it), `bdrs` BDRs each time; `floors`: also time the store's floor beside them."""

    rounds: int
    bdrs: int
    floors: bool = True  # also time the store's floor beside each build
    # The control: the worker's environment for a second worker process on another queue.
    control: dict[str, str] | None = None


# SeaweedFS on these two cores takes 20 s to a minute an export of 3 GB (a plain multipart
# upload of 1 GiB took 11 to 17 s): two rounds there keep the whole run within 6 to 8 minutes.
PLANS = {"folder": Plan(rounds=3, bdrs=5), "seaweedfs": Plan(rounds=2, bdrs=6)}
QUICK_PLANS = {"folder": Plan(rounds=1, bdrs=2), "seaweedfs": Plan(rounds=1, bdrs=1)}


@dataclass(frozen=True)
class Picked:
    """The BDR's 128 artworks: their posts, their files, the files' bytes."""

    posts: list[int]
    files: list[Path]
    bytes: int


async def _idle_bdrs(run: Run, owner: Owner, bdr: Picked, plan: Plan
                     ) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:  # fmt: skip
    done, floors = [], []
    for _ in range(plan.bdrs):
        with PeakRss(lambda: rss_kb(run.worker_pid), SAMPLE_EVERY, None, TRACE_EVERY) as rss:
            done.append(await run.bdr(owner, bdr.posts, bdr.bytes))
        done[-1]["peak_rss_mb"] = rss.peak / 1024
        await asyncio.sleep(GAP_S)
        if plan.floors:
            floors.append(await asyncio.to_thread(_floor, run.zips, [bdr.files]))
            await asyncio.sleep(GAP_S)
    return done, floors


async def _busy_bdrs(run: Run, owner: Owner, bdr: Picked, count: int,
                     export: Requested) -> list[dict[str, Any]]:  # fmt: skip
    """BDRs one after another while the export builds, from BUSY_FROM of its artworks on."""
    export_id = export.id
    n = len(owner.post_ids)
    await run.until(SQL_EXPORT_ROW, export_id,
                    lambda r: r["status"] == "ready" or r["progress_done"] >= BUSY_FROM * n)  # fmt: skip
    done: list[dict[str, Any]] = []
    while len(done) < count:
        row = await run.conn.fetchrow(SQL_EXPORT_ROW, export_id)
        assert row is not None
        if row["status"] != "processing" or row["progress_done"] > BUSY_UNTIL * n:
            break
        done.append(await run.bdr(owner, bdr.posts, bdr.bytes))
        await asyncio.sleep(GAP_S)
    return done


def _part_groups(owner: Owner) -> list[list[Path]]:
    """The export's artworks in order, cut at PART_BYTES as the planner cuts them."""
    groups: list[list[Path]] = [[]]
    size = 0
    for path in owner.paths:
        n = path.stat().st_size
        if groups[-1] and size + n > PART_BYTES - (64 << 10):
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += n
    return groups


def other_queue(url: str) -> str:
    """The same Redis, another database: a queue only the control's worker reads."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        db = int(parse_qs(parts.query).get("db", ["0"])[0])
        return f"{url.partition('?')[0]}?db={(db + 1) % 16}"
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(db + 1) % 16}"))


async def _control(run: Run, owner: Owner, warm: Owner, bdr: Picked, plan: Plan
                   ) -> dict[str, Any]:  # fmt: skip
    """The same BDRs while the same export builds in a second worker process, where the first
    one's gate cannot hold it: what BDRs would suffer without going first. If these were as
    fast as beside the export in the same worker, the figure would prove nothing."""
    assert plan.control is not None
    env = plan.control
    second = start_worker(env)
    redis = create_redis(env["REDIS_URL"])
    try:
        await run.export_done(await run.request_export(warm, redis), warm, read_back=False)
        export = await run.request_export(owner, redis)
        during = await _busy_bdrs(run, owner, bdr, plan.bdrs, export)
        done = await run.export_done(export, owner, read_back=False)
    finally:
        await redis.aclose()
        stop(second)
    _mark_inside(during, done)
    print(f"    control: {len(during)} BDRs while a second worker built the export "
          f"({sum(b['inside_export'] for b in during)} wholly inside it, which took "
          f"{done['build_s']:.1f} s)", flush=True)  # fmt: skip
    return {"bdrs": during, "export": done}


def _mark_inside(bdrs: list[dict[str, Any]], export: dict[str, Any]) -> None:
    """Which BDRs ran wholly inside the export's claim → ready (by their rows' times)."""
    for b in bdrs:
        b["inside_export"] = (
            export["started_at"] <= b["started_at"] <= b["completed_at"] <= export["completed_at"]
        )


async def measure_store(run: Run, worker_pid: int, owner: Owner, warm: Owner, plan: Plan,
                        after_export: Callable[[], Awaitable[None]]) -> dict[str, Any]:  # fmt: skip
    step = len(owner.post_ids) / BDR_ARTWORKS
    picks = [int(i * step) for i in range(BDR_ARTWORKS)]
    files = [owner.paths[i] for i in picks]
    bdr = Picked([owner.post_ids[i] for i in picks], files, sum(p.stat().st_size for p in files))
    groups = _part_groups(owner)
    # Warm-up: every code path of both jobs loaded, the worker's pools and buffers made.
    await run.bdr(warm, warm.post_ids)
    await run.bdr(owner, bdr.posts, bdr.bytes)
    await run.export_done(await run.request_export(warm), warm, read_back=False)
    await after_export()
    await asyncio.sleep(1.0)  # let the warm-up's garbage go
    baseline = rss_kb(worker_pid)
    idle: list[list[dict[str, Any]]] = []
    alone: list[dict[str, Any]] = []
    busy: list[dict[str, Any]] = []
    busy_exports: list[dict[str, Any]] = []
    bdr_floors: list[dict[str, float]] = []
    export_floors: list[dict[str, float]] = []
    peaks: list[int] = []
    samples: list[int] = []
    busy_peak = 0
    for r in range(plan.rounds):
        done, floors = await _idle_bdrs(run, owner, bdr, plan)
        idle.append(done)
        bdr_floors += floors
        # The BDRs read the same 128 files again and again, always in the page cache; this
        # machine's cache was seen to hold 92-98% of the 3 GB (other work on it evicts some).
        await asyncio.to_thread(_read_all, owner.paths)
        before = rss_kb(worker_pid)
        export = await run.request_export(owner)
        with PeakRss(lambda: rss_kb(worker_pid), SAMPLE_EVERY, None, TRACE_EVERY) as rss:
            alone.append(await run.export_done(export, owner, read_back=r == 0))
        peaks.append(rss.peak)
        samples.append(rss.samples)
        alone[-1] |= {"rss_trace": rss.trace, "rss_before_mb": before / 1024,
                      "rss_peak_mb": rss.peak / 1024}  # fmt: skip
        await after_export()
        line = (f"    round {r + 1}: export alone {alone[-1]['build_s']:.1f} s "
                f"({alone[-1]['throughput_mb_s']:.0f} MB/s, {alone[-1]['parts']} parts), "
                f"peak RSS {rss.peak / 1024:.1f} MB")  # fmt: skip
        if plan.floors:
            export_floors.append(await asyncio.to_thread(_floor, run.zips, groups))
            await after_export()
            line += f"; its floor {_throughput(export_floors[-1]):.0f} MB/s"
        print(line, flush=True)
        done, floors = await _idle_bdrs(run, owner, bdr, plan)
        idle.append(done)
        bdr_floors += floors
        export = await run.request_export(owner)
        with PeakRss(lambda: rss_kb(worker_pid), SAMPLE_EVERY, None, TRACE_EVERY) as rss:
            during = await _busy_bdrs(run, owner, bdr, plan.bdrs, export)
            busy_exports.append(await run.export_done(export, owner, read_back=False))
        busy_peak = max(busy_peak, rss.peak)
        await after_export()
        e = busy_exports[-1]
        _mark_inside(during, e)
        busy += during
        print(f"    round {r + 1}: {len(during)} BDRs during an export "
              f"({sum(b['inside_export'] for b in during)} wholly inside it, which took "
              f"{e['build_s']:.1f} s)", flush=True)  # fmt: skip
    control = await _control(run, owner, warm, bdr, plan) if plan.control is not None else None
    after = rss_kb(worker_pid)
    idle_all = [b for group in idle for b in group]
    inside = [b for b in busy if b["inside_export"]]
    bdr_rate = _aggregate(idle_all)
    export_rate = _aggregate(alone)
    # Each export against the idle BDRs just before and just after it.
    by_round = [
        _aggregate([e]) / _aggregate(idle[2 * i] + idle[2 * i + 1]) for i, e in enumerate(alone)
    ]
    idle_ready = _median([b["to_ready_s"] for b in idle_all])
    busy_ready = _median([b["to_ready_s"] for b in inside])
    figures = {
        "bdr_bytes": idle_all[0]["bytes"],
        "rounds": plan.rounds,
        "idle_bdrs": idle_all,
        "busy_bdrs": busy,
        "exports": alone,
        "busy_exports": busy_exports,
        "bdr_throughput_mb_s": bdr_rate,
        "export_throughput_mb_s": export_rate,
        "bdr_median_mb_s": _median([_throughput(b) for b in idle_all]),
        "bdr_cpu_s_per_gb": _cpu_per_gb(idle_all),
        "export_cpu_s_per_gb": _cpu_per_gb(alone),
        "throughput_ratio": export_rate / bdr_rate,
        "throughput_ratio_by_round": by_round,
        "idle_to_ready_s": idle_ready,
        "busy_to_ready_s": busy_ready,
        "busy_inside": len(inside),
        "bdr_slowdown": busy_ready / idle_ready,
        # The first export on its own, after the warm-up and idle BDRs only: once a BDR and an
        # export have been built side by side, the worker keeps their joint high-water (its
        # allocator does not hand it all back), and later exports start from there.
        "rss": {
            "baseline_mb": baseline / 1024,
            "peak_mb": peaks[0] / 1024,
            "growth_mb": (peaks[0] - baseline) / 1024,
            "samples": samples[0],
            # The same reading around each idle BDR before it: what a BDR's build takes.
            "bdr_growth_mb": max(b["peak_rss_mb"] for b in idle[0]) - baseline / 1024,
            "peak_with_bdrs_mb": busy_peak / 1024,
            "later_peaks_mb": [p / 1024 for p in peaks[1:]],
            "after_mb": after / 1024,
        },
    }
    if control is not None:
        inside_control = [b for b in control["bdrs"] if b["inside_export"]]
        control_ready = _median([b["to_ready_s"] for b in inside_control])
        figures["control"] = control | {
            "to_ready_s": control_ready,
            "inside": len(inside_control),
            "slowdown": control_ready / idle_ready,
        }
    if plan.floors:
        bdr_floor = _aggregate(bdr_floors)
        export_floor = _aggregate(export_floors)
        figures["floors"] = {
            "bdr": bdr_floors,
            "export": export_floors,
            "bdr_mb_s": bdr_floor,
            "export_mb_s": export_floor,
            "ratio": export_floor / bdr_floor,
            "bdr_share": bdr_rate / bdr_floor,
            "export_share": export_rate / export_floor,
            # The throughput ratio with the disk's own difference between the two sizes taken
            # out: what the export's code does per byte against a BDR's.
            "normalized": (export_rate / export_floor) / (bdr_rate / bdr_floor),
        }
    return figures


# --- the run -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _run(settings: Settings, store: Settings, worker_pid: int) -> AsyncIterator[Run]:
    conn = await connect(settings.database_url, "pmd-bench")
    listener = await connect(settings.database_url, "pmd-bench-listen")
    doorbell: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(CHANNEL, lambda *args: doorbell.put_nowait(args[3]))
    redis = create_redis(settings.redis_url)
    try:
        yield Run(conn, redis, doorbell, ZipFiles(store), worker_pid)
    finally:
        await redis.aclose()
        await listener.close()
        await conn.close()


def _disk_bytes(folder: Path) -> int:
    return sum(
        os.stat(os.path.join(root, name)).st_blocks * 512
        for root, _, names in os.walk(folder)
        for name in names
    )


def _settle(weed: Seaweed | None) -> None:
    """After an export: the space of what was deleted back, and every byte written so far on
    disk, so each measurement starts from a settled disk. SeaweedFS deletes an object's chunks
    a moment after the object (then a vacuum reclaims them): a vacuum at once reclaimed nothing,
    and two exports of 3 GB in a row ran it out of volumes (500s)."""
    if weed is not None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            weed.vacuum()
            if _disk_bytes(weed.directory / "data") < SEAWEED_SETTLED_BYTES:
                break
            time.sleep(0.25)
        else:
            raise RuntimeError("SeaweedFS kept the deleted parts' space for 60 s")
    os.sync()


def _remove_leftovers(weed: Seaweed, since: float) -> None:
    """What `weed server` leaves outside its own folder once stopped: a Unix socket per
    server and gRPC port (always under /tmp), and its log files, named by its pid. Only files
    made since it started: a dead server's stale ones may carry the same port or pid."""

    def remove(paths: Iterator[Path]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                if path.lstat().st_mtime >= since:
                    path.unlink()

    ports = [int(a.split("=")[1]) for a in weed.args if a.split("=")[0].endswith(".port")]
    for port in ports + [p + 10000 for p in ports]:  # gRPC on +10000 (support/seaweed.py)
        remove(Path("/tmp").glob(f"seaweedfs-*-{port}.sock"))
    if weed.proc is not None:
        logs = Path(tempfile.gettempdir())
        remove(logs.glob(f"weed.*.log.*.{weed.proc.pid}"))
        # weed.INFO etc. point at the newest server's logs: those just removed, now nothing.
        remove(link for link in logs.glob("weed.*") if link.is_symlink() and not link.exists())


async def _in_store(settings: Settings, name: str, env: dict[str, str], owner: Owner,
                    warm: Owner, plan: Plan, weed: Seaweed | None) -> dict[str, Any]:  # fmt: skip
    store = msgspec.structs.replace(
        settings,
        bdr_store=env.get("BDR_STORE"),
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL", ""),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
    )

    async def after_export() -> None:
        await asyncio.to_thread(_settle, weed)

    print(f"  {name}:", flush=True)
    worker = start_worker(service_env(settings, **env))
    try:
        async with _run(settings, store, worker.pid) as run:
            return await measure_store(run, worker.pid, owner, warm, plan, after_export)
    finally:
        stop(worker)


@contextlib.asynccontextmanager
async def _seeded(artworks: int) -> AsyncIterator[tuple[Settings, Owner, Owner]]:
    async with fresh_stack() as settings:
        conn = await connect(settings.database_url, "pmd-bench")
        try:
            started = time.perf_counter()
            owner = await seed_owner(conn, settings, "exporter", artworks, 1)
            warm = await seed_owner(conn, settings, "warm", WARM_ARTWORKS, 2)
        finally:
            await conn.close()
        await asyncio.to_thread(os.sync)  # the vault on disk: no writeback during the rounds
        print(f"seeded {artworks:,} artworks, {owner.bytes / 1e9:.2f} GB, in "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
        yield settings, owner, warm


async def _stores(artworks: int, plans: dict[str, Plan]) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "artworks": artworks, "part_bytes": PART_BYTES, "bdr_artworks": BDR_ARTWORKS,
        "stores": {},
    }  # fmt: skip
    async with _seeded(artworks) as (settings, owner, warm):
        figures["artwork_bytes"] = owner.bytes
        # Those of this run, which the report's machine line (of whichever benchmark ran
        # last) may not name.
        figures["servers"] = list(await service_versions())
        if "folder" in plans:
            control = service_env(settings, REDIS_URL=other_queue(settings.redis_url))
            plan = dataclasses.replace(plans["folder"], control=control)
            figures["stores"]["folder"] = await _in_store(
                settings, "folder", {}, owner, warm, plan, None
            )
        if "seaweedfs" in plans:
            with contextlib.ExitStack() as stack:  # started only now: idle, it still takes CPU
                since = time.time() - 1  # file times are coarser than the clock
                weed = await asyncio.to_thread(
                    stack.enter_context, running_seaweed(SEAWEED_VOLUMES)
                )
                stack.callback(_remove_leftovers, weed, since)  # once it is stopped (LIFO)
                bucket = new_bucket_name()
                await create_bucket(weed, bucket)
                figures["stores"]["seaweedfs"] = await _in_store(
                    settings, "seaweedfs", weed.env(bucket, "bench/exports"), owner, warm,
                    plans["seaweedfs"], weed,
                )  # fmt: skip
    return figures


def run(artworks: int, plans: dict[str, Plan]) -> dict[str, Any]:
    figures = asyncio.run(_stores(artworks, plans))
    for name, f in figures["stores"].items():
        report(name, f)
    return figures


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(name: str, f: dict[str, Any]) -> None:
    rss = f["rss"]
    ratio, growth, slow = f["throughput_ratio"], rss["growth_mb"], f["bdr_slowdown"]
    by_round = ", ".join(f"{r:.2f}" for r in f["throughput_ratio_by_round"])
    print(
        f"{name}:\n"
        f"  export throughput ÷ a BDR's  {ratio:5.2f}×  (target ≥ {TARGET_THROUGHPUT}: "
        f"{_verdict(ratio >= TARGET_THROUGHPUT)}) export {f['export_throughput_mb_s']:.0f} MB/s, "
        f"BDR {f['bdr_throughput_mb_s']:.0f} MB/s; by round {by_round}\n"
        f"  worker RSS growth           {growth:+5.1f} MB (target ≤ +{TARGET_GROWTH_MB:.0f}: "
        f"{_verdict(growth <= TARGET_GROWTH_MB)}) {rss['baseline_mb']:.1f} → peak "
        f"{rss['peak_mb']:.1f} MB, {rss['samples']:,} readings; with BDRs beside it peak "
        f"{rss['peak_with_bdrs_mb']:.1f} MB\n"
        f"  BDR during an export ÷ idle  {slow:5.2f}×  (target ≤ {TARGET_BDR_SLOWDOWN}: "
        f"{_verdict(slow <= TARGET_BDR_SLOWDOWN)}) {f['busy_to_ready_s'] * 1000:.0f} ms against "
        f"{f['idle_to_ready_s'] * 1000:.0f} ms to ready, medians of {f['busy_inside']} and "
        f"{len(f['idle_bdrs'])}\n"
        f"  worker CPU per GB, export ÷ BDR {f['export_cpu_s_per_gb'] / f['bdr_cpu_s_per_gb']:.2f}× "
        f"({f['export_cpu_s_per_gb']:.2f} s against {f['bdr_cpu_s_per_gb']:.2f} s)",
        flush=True,
    )
    if "floors" in f:
        fl = f["floors"]
        print(f"  store floor, the export's bytes ÷ a BDR's {fl['ratio']:.2f}× "
              f"({fl['export_mb_s']:.0f} against {fl['bdr_mb_s']:.0f} MB/s); export at "
              f"{fl['export_share']:.2f} of its floor, BDRs at {fl['bdr_share']:.2f}: "
              f"{fl['normalized']:.2f}× a BDR's per byte against each one's floor")  # fmt: skip
    if "control" in f:
        c = f["control"]
        print(f"  control, BDR while a second worker builds the export ÷ idle "
              f"{c['slowdown']:.2f}× ({c['to_ready_s'] * 1000:.0f} ms, median of {c['inside']}): "
              f"what going first saves", flush=True)  # fmt: skip


def main() -> None:
    parser = cli.parser("export", __doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke test of about a minute")
    parser.add_argument("--stores", default="folder,seaweedfs")
    args = parser.parse_args()
    artworks, plans = (QUICK_ARTWORKS, QUICK_PLANS) if args.quick else (ARTWORKS, PLANS)
    stores = [s for s in args.stores.split(",") if s]
    unknown = set(stores) - set(plans)
    if unknown:
        parser.error(f"unknown store(s) {', '.join(sorted(unknown))}; known: {', '.join(plans)}")
    figures = run(artworks, {s: plans[s] for s in stores}) | {"quick": args.quick}
    cli.save(args.json, figures)


if __name__ == "__main__":
    main()
