"""A full export in parts through the real worker: `python -m bench.export [--quick]`.

Not a test: prints figures, exits 0. One user with 3,000 artworks of ~1 MB of random bytes, one
with 8 for the warm-ups; the real worker builds exports in parts of 256 MiB, requested as the
server does, into the folder (BDR_PATH), then into SeaweedFS (BDR_STORE=s3://…). Each round, in
each store: BDRs of 128 of the same artworks with the worker idle, each beside its floor (the
same files written plainly); an export alone (the worker's RSS read every 5 ms), beside its
floor; idle BDRs again; an export with the same BDRs beside it. Three rounds in the folder, two
in SeaweedFS, then the control in the folder: the same BDRs while a second worker (another Redis
database) builds the export. Figures, each a ratio within the run: throughput (target ≥ 0.9× a
BDR's), RSS growth (≤ +30 MB), a BDR's time to ready during an export (≤ 1.5× idle). Every build
is checked (all artworks, none skipped, sizes as their rows say, one part read back against its
SHA-256) and every file written is removed. docs/benchmarks.md tells the rest.

`--quick`: 300 artworks, one round of 2 BDRs (folder) or 1 (SeaweedFS), in about a minute: a
smoke test of the benchmark itself, its figures too few to go by.
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
from collections import deque
from collections.abc import Iterator
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
from bench.job import Run, driving
from bench.runner import service_versions
from pmd_service.bdr.files import ZipFiles
from pmd_service.core.db import connect
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.queue import create_redis
from pmd_service.core.settings import Settings
from pmd_service.exports.queue import enqueue_export
from pmd_service.host.vault import artwork_path
from pmd_service.jobs.zip.build import PART_BYTES as ZIP_PART_BYTES
from pmd_service.jobs.zip.build import PARTS_IN_FLIGHT
from support.measures import PeakRss, cpu_seconds, rss_kb
from support.seaweed import Seaweed, create_bucket, new_bucket_name, running_seaweed
from support.seeding import Factory
from support.stack import fresh_stack, service_env, start_worker, stop

ARTWORKS, QUICK_ARTWORKS, WARM_ARTWORKS, BDR_ARTWORKS = 3000, 300, 8, 128
PART_BYTES = 256 << 20
TARGET_THROUGHPUT = 0.9
TARGET_GROWTH_MB = 30.0
TARGET_BDR_SLOWDOWN = 1.5
# Between two BDRs (idle or during an export alike): the export gets the worker back meanwhile.
GAP_S = 0.5
# BDRs during an export start once it has built this share of its artworks (its plan is made,
# its parts are being built), and no more start past the second share: each should end before
# the export does.
BUSY_FROM, BUSY_UNTIL = 0.05, 0.8
# SeaweedFS's data folder with no ZIP left in it (its volumes' indexes and the filer's store).
SEAWEED_SETTLED_BYTES = 64 << 20
# Volumes of 256 MB SeaweedFS may grow: room for four exports of 3 GB and the BDRs around them
# even if no vacuumed volume took writes again (on disk only what is not yet vacuumed).
SEAWEED_VOLUMES = 128

# As the server inserts one, with the API's defaults (comments and reactions included).
SQL_EXPORT = """
INSERT INTO exports (user_id, user_sqid, part_bytes, artwork_count) VALUES ($1, $2, $3, $4)
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


@dataclass(frozen=True)
class Owner:
    id: int
    sqid: str
    post_ids: list[int]  # newest first, as the export orders them
    paths: list[Path]  # their files, in the same order
    bytes: int


def _write_random(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(seed).bytes(size - 8))


async def seed_owner(conn: asyncpg.Connection, settings: Settings, handle: str, n: int,
                     seed: int) -> Owner:  # fmt: skip
    """A user with `n` artworks of 0.9–1.1 MB of random bytes, in the vault as the host lays it
    out, each post a second older than the one before (the export's order is known)."""
    user = await Factory(conn, settings).user(handle)
    ids = PublicIds(settings.sqids_alphabet)
    rng = random.Random(seed)
    keys = [uuid.uuid4() for _ in range(n)]
    shards = [f"{i % 64:02x}/{i * 7 % 64:02x}" for i in range(n)]
    sizes = [rng.randrange(900_000, 1_100_000) for _ in range(n)]
    created = [datetime.now(UTC) - timedelta(seconds=i) for i in range(n)]
    rows = await conn.fetch(
        "INSERT INTO posts (storage_key, storage_shard, owner_id, title, created_at) "
        "SELECT k, s, $3, 'artwork ' || o, c "
        "FROM unnest($1::uuid[], $2::text[], $4::timestamptz[]) WITH ORDINALITY AS u(k, s, c, o) "
        "ORDER BY o RETURNING id",
        keys, shards, user.id, created,
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
    return Owner(user.id, user.sqid, post_ids, paths, sum(sizes))


# --- the worker's exports, as the server requests them -----------------------------------------


@dataclass(frozen=True)
class Requested:
    """An export just requested, and the worker's CPU time then."""

    id: uuid.UUID
    cpu_s: float


async def request_export(run: Run, owner: Owner, redis: ArqRedis | None = None) -> Requested:
    """`redis`: another queue than the worker's (the control's second worker)."""
    cpu = cpu_seconds(run.worker_pid)
    export_id: uuid.UUID = await run.conn.fetchval(
        SQL_EXPORT, owner.id, owner.sqid, PART_BYTES, len(owner.post_ids)
    )
    await enqueue_export(redis or run.redis, export_id)
    return Requested(export_id, cpu)


async def export_done(run: Run, export: Requested, owner: Owner, *, read_back: bool
                      ) -> dict[str, Any]:  # fmt: skip
    """The export once ready, checked (see the module's docstring), its parts removed."""
    row = await run.until(SQL_EXPORT_ROW, export.id, lambda r: r["status"] == "ready")
    cpu = cpu_seconds(run.worker_pid) - export.cpu_s
    parts = await run.conn.fetch(SQL_PARTS, export.id)
    n = len(owner.post_ids)
    assert row["artwork_count"] == n and row["progress_done"] == n, dict(row)
    assert row["skipped"] == [], row["skipped"]
    assert sum(p["artwork_count"] for p in parts) == n
    sizes = [p["file_size_bytes"] for p in parts]
    assert sum(sizes) == row["total_bytes"] >= owner.bytes, (sum(sizes), row["total_bytes"])
    assert max(sizes) <= PART_BYTES and len(parts) >= -(-row["total_bytes"] // PART_BYTES)
    for part in parts:
        assert part["status"] == "ready", dict(part)
        stored = await run.zips.locate(part["file_path"])
        assert stored.size == part["file_size_bytes"], (stored.size, dict(part))
    if read_back:  # the bytes are there, and they are the ones the row vouches for
        part = parts[len(parts) // 2]
        digest = await _sha256(run.zips, part["file_path"], part["file_size_bytes"])
        assert digest == part["sha256"].strip(), (digest, part["sha256"])
    for part in parts:
        await run.zips.remove(part["file_path"])
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


async def _sha256(zips: ZipFiles, file_path: str, size: int) -> str:
    digest = hashlib.sha256()
    stored = await zips.locate(file_path)
    if stored.path is not None:
        await asyncio.to_thread(deque, map(digest.update, _read([stored.path])), 0)
    else:
        async for chunk in zips.chunks(await zips.read(stored, 0, size), 1 << 20):
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
                size += target.write(chunk)
            os.fsync(target.fileno())
        out.unlink()
    return {"build_s": time.perf_counter() - started, "bytes": size}


@dataclass(frozen=True)
class Plan:
    """What one store runs: `rounds` of (BDRs, an export alone, BDRs, an export with BDRs
    beside it), `bdrs` BDRs each time, each build beside the store's floor."""

    rounds: int
    bdrs: int
    # The control: the worker's environment for a second worker process on another queue.
    control: dict[str, str] | None = None


# SeaweedFS on these two cores takes 20 s to a minute an export of 3 GB (a plain multipart
# upload of 1 GiB took 11 to 17 s): two rounds there keep the whole run within 6 to 8 minutes.
PLANS = {"folder": Plan(rounds=3, bdrs=5), "seaweedfs": Plan(rounds=2, bdrs=6)}
QUICK_PLANS = {"folder": Plan(rounds=1, bdrs=2), "seaweedfs": Plan(rounds=1, bdrs=1)}


@dataclass(frozen=True)
class Picked:
    """The BDR's 128 artworks (spread over the owner's): their posts, files and bytes."""

    owner: Owner
    posts: list[int]
    files: list[Path]
    bytes: int

    async def bdr(self, run: Run) -> dict[str, Any]:
        return await run.bdr(self.owner.id, self.owner.sqid, self.posts, self.bytes)


def _rss(run: Run) -> PeakRss:
    """The worker's peak RSS, read every 5 ms, with its trace every half second."""
    return PeakRss(lambda: rss_kb(run.worker_pid), 0.005, None, 0.5)


async def _beside_export(run: Run, bdr: Picked, count: int, label: str,
                        redis: ArqRedis | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """An export of the BDRs' owner, and BDRs one after another while it builds, from BUSY_FROM
    of its artworks on, each marked by whether it ran wholly inside the export's claim → ready
    (their rows' times): (the BDRs, the export)."""
    export = await request_export(run, bdr.owner, redis)
    n = len(bdr.owner.post_ids)
    await run.until(SQL_EXPORT_ROW, export.id,
                    lambda r: r["status"] == "ready" or r["progress_done"] >= BUSY_FROM * n)  # fmt: skip
    done: list[dict[str, Any]] = []
    while len(done) < count:
        row = await run.conn.fetchrow(SQL_EXPORT_ROW, export.id)
        assert row is not None
        if row["status"] != "processing" or row["progress_done"] > BUSY_UNTIL * n:
            break
        done.append(await bdr.bdr(run))
        await asyncio.sleep(GAP_S)
    built = await export_done(run, export, bdr.owner, read_back=False)
    for b in done:
        b["inside_export"] = (
            built["started_at"] <= b["started_at"] <= b["completed_at"] <= built["completed_at"]
        )
    print(f"    {label}: {len(done)} BDRs during an export ({sum(b['inside_export'] for b in done)}"
          f" wholly inside it, which took {built['build_s']:.1f} s)", flush=True)  # fmt: skip
    return done, built


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


async def _control(run: Run, warm: Owner, bdr: Picked, plan: Plan) -> dict[str, Any]:
    """The same BDRs while the same export builds in a second worker process, where the first
    one's gate cannot hold it: what BDRs would suffer without going first. If these were as
    fast as beside the export in the same worker, the figure would prove nothing."""
    assert plan.control is not None
    second = start_worker(plan.control)
    redis = create_redis(plan.control["REDIS_URL"])
    try:
        await export_done(run, await request_export(run, warm, redis), warm, read_back=False)
        during, done = await _beside_export(run, bdr, plan.bdrs, "control, a second worker", redis)
    finally:
        await redis.aclose()
        stop(second)
    return {"bdrs": during, "export": done}


async def measure_store(run: Run, owner: Owner, warm: Owner, plan: Plan, weed: Seaweed | None
                        ) -> dict[str, Any]:  # fmt: skip
    picks = [int(i * len(owner.post_ids) / BDR_ARTWORKS) for i in range(BDR_ARTWORKS)]
    files = [owner.paths[i] for i in picks]
    bdr = Picked(owner, [owner.post_ids[i] for i in picks], files,
                 sum(p.stat().st_size for p in files))  # fmt: skip
    groups = _part_groups(owner)

    async def settle() -> None:
        await asyncio.to_thread(_settle, weed)

    # Warm-up: every code path of both jobs loaded, the worker's pools and buffers made.
    await run.bdr(warm.id, warm.sqid, warm.post_ids)
    await bdr.bdr(run)
    await export_done(run, await request_export(run, warm), warm, read_back=False)
    await settle()
    await asyncio.sleep(1.0)  # let the warm-up's garbage go
    baseline = rss_kb(run.worker_pid)
    idle: list[list[dict[str, Any]]] = []
    alone: list[dict[str, Any]] = []
    busy: list[dict[str, Any]] = []
    busy_exports: list[dict[str, Any]] = []
    bdr_floors: list[dict[str, float]] = []
    export_floors: list[dict[str, float]] = []
    busy_peak = samples = 0

    async def idle_bdrs() -> None:
        idle.append([])
        for _ in range(plan.bdrs):
            with _rss(run) as rss:
                done = await bdr.bdr(run)
            idle[-1].append(done | {"peak_rss_mb": rss.peak / 1024})
            await asyncio.sleep(GAP_S)
            bdr_floors.append(await asyncio.to_thread(_floor, run.zips, [bdr.files]))
            await asyncio.sleep(GAP_S)

    for r in range(plan.rounds):
        await idle_bdrs()
        # The BDRs read the same 128 files again and again, always in the page cache; this
        # machine's cache was seen to hold 92-98% of the 3 GB (other work on it evicts some).
        await asyncio.to_thread(deque, _read(owner.paths), 0)
        before = rss_kb(run.worker_pid)
        export = await request_export(run, owner)
        with _rss(run) as rss:
            alone.append(await export_done(run, export, owner, read_back=r == 0))
        samples = samples or rss.samples  # the first export's
        alone[-1] |= {"rss_trace": rss.trace, "rss_before_mb": before / 1024,
                      "rss_peak_mb": rss.peak / 1024}  # fmt: skip
        await settle()
        export_floors.append(await asyncio.to_thread(_floor, run.zips, groups))
        await settle()
        print(f"    round {r + 1}: export alone {alone[-1]['build_s']:.1f} s "
              f"({alone[-1]['throughput_mb_s']:.0f} MB/s, {alone[-1]['parts']} parts), peak RSS "
              f"{rss.peak / 1024:.1f} MB; its floor {_throughput(export_floors[-1]):.0f} MB/s",
              flush=True)  # fmt: skip
        await idle_bdrs()
        with _rss(run) as rss:
            during, built = await _beside_export(run, bdr, plan.bdrs, f"round {r + 1}")
        busy += during
        busy_exports.append(built)
        busy_peak = max(busy_peak, rss.peak)
        await settle()
    control = await _control(run, warm, bdr, plan) if plan.control is not None else None
    idle_all = [b for group in idle for b in group]
    inside_all = [b for b in busy if b["inside_export"]]
    bdr_rate, export_rate = _aggregate(idle_all), _aggregate(alone)
    # Each export against the idle BDRs just before and just after it.
    by_round = [_aggregate([e]) / _aggregate(idle[2 * i] + idle[2 * i + 1])
                for i, e in enumerate(alone)]  # fmt: skip
    idle_ready = _median([b["to_ready_s"] for b in idle_all])
    busy_ready = _median([b["to_ready_s"] for b in inside_all])
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
        "busy_inside": len(inside_all),
        "bdr_slowdown": busy_ready / idle_ready,
        # The first export on its own, after the warm-up and idle BDRs only: once a BDR and an
        # export have been built side by side, the worker keeps their joint high-water (its
        # allocator does not hand it all back), and later exports start from there.
        "rss": {
            "baseline_mb": baseline / 1024,
            "peak_mb": alone[0]["rss_peak_mb"],
            "growth_mb": alone[0]["rss_peak_mb"] - baseline / 1024,
            "samples": samples,
            # The same reading around each idle BDR before it: what a BDR's build takes.
            "bdr_growth_mb": max(b["peak_rss_mb"] for b in idle[0]) - baseline / 1024,
            "peak_with_bdrs_mb": busy_peak / 1024,
            "later_peaks_mb": [e["rss_peak_mb"] for e in alone[1:]],
            "after_mb": rss_kb(run.worker_pid) / 1024,
        },
    }
    if control is not None:
        inside_control = [b for b in control["bdrs"] if b["inside_export"]]
        control_ready = _median([b["to_ready_s"] for b in inside_control])
        figures["control"] = control | {"to_ready_s": control_ready, "inside": len(inside_control),
                                        "slowdown": control_ready / idle_ready}  # fmt: skip
    bdr_floor, export_floor = _aggregate(bdr_floors), _aggregate(export_floors)
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


def _disk_bytes(folder: Path) -> int:
    return sum((Path(root) / name).stat().st_blocks * 512
               for root, _, names in os.walk(folder) for name in names)  # fmt: skip


def _settle(weed: Seaweed | None) -> None:
    """After an export: the space of what was deleted back, and every byte written so far on
    disk, so each measurement starts from a settled disk. SeaweedFS deletes an object's chunks
    a moment after the object (then a vacuum reclaims them): a vacuum at once reclaimed nothing,
    and two exports of 3 GB in a row ran it out of volumes (500s)."""
    deadline = time.monotonic() + 60
    while weed is not None:
        weed.vacuum()
        if _disk_bytes(weed.directory / "data") < SEAWEED_SETTLED_BYTES:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("SeaweedFS kept the deleted parts' space for 60 s")
        time.sleep(0.25)
    os.sync()


def _remove_leftovers(weed: Seaweed, since: float) -> None:
    """What `weed server` leaves outside its own folder once stopped: a Unix socket per
    server and gRPC port (always under /tmp), and its log files, named by its pid. Only files
    made since it started: a dead server's stale ones may carry the same port or pid."""
    ports = [int(a.split("=")[1]) for a in weed.args if a.split("=")[0].endswith(".port")]
    logs = Path(tempfile.gettempdir())
    found = [path for port in ports + [p + 10000 for p in ports]  # gRPC on +10000
             for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")]  # fmt: skip
    if weed.proc is not None:
        found += logs.glob(f"weed.*.log.*.{weed.proc.pid}")
    for path in found:
        with contextlib.suppress(FileNotFoundError):
            if path.lstat().st_mtime >= since:
                path.unlink()
    # weed.INFO etc. point at the newest server's logs: those just removed, now nothing.
    for link in logs.glob("weed.*"):
        if link.is_symlink() and not link.exists() and link.lstat().st_mtime >= since:
            link.unlink()


async def _in_store(settings: Settings, name: str, env: dict[str, str], owner: Owner,
                    warm: Owner, plan: Plan, weed: Seaweed | None) -> dict[str, Any]:  # fmt: skip
    store = msgspec.structs.replace(
        settings,
        bdr_store=env.get("BDR_STORE"),
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL", ""),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
    )
    print(f"  {name}:", flush=True)
    worker = start_worker(service_env(settings, **env))
    try:
        async with driving(settings, worker.pid, store) as run:
            return await measure_store(run, owner, warm, plan, weed)
    finally:
        stop(worker)


async def _stores(artworks: int, plans: dict[str, Plan]) -> dict[str, Any]:
    figures: dict[str, Any] = {"artworks": artworks, "part_bytes": PART_BYTES,
                               "bdr_artworks": BDR_ARTWORKS, "stores": {}}  # fmt: skip
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


def report(name: str, f: dict[str, Any]) -> None:
    rss, by_round = f["rss"], ", ".join(f"{r:.2f}" for r in f["throughput_ratio_by_round"])
    print(f"{name}: export throughput ÷ a BDR's {f['throughput_ratio']:.2f}× (target ≥ "
          f"{TARGET_THROUGHPUT}; by round {by_round}); worker RSS growth "
          f"{rss['growth_mb']:+.1f} MB (target ≤ +{TARGET_GROWTH_MB:.0f}, {rss['samples']:,} "
          f"readings); BDR during an export ÷ idle {f['bdr_slowdown']:.2f}× (target ≤ "
          f"{TARGET_BDR_SLOWDOWN}, median of {f['busy_inside']}); worker CPU per GB, export ÷ "
          f"BDR {f['export_cpu_s_per_gb'] / f['bdr_cpu_s_per_gb']:.2f}×", flush=True)  # fmt: skip
    print(f"  floors: export ÷ BDR {f['floors']['ratio']:.2f}×; throughput ratio against "
          f"each one's floor {f['floors']['normalized']:.2f}×")  # fmt: skip
    if "control" in f:
        print(f"  control, BDR while a second worker builds the export ÷ idle "
              f"{f['control']['slowdown']:.2f}×: what going first saves")  # fmt: skip


def main() -> None:
    parser = cli.parser("export", __doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke test of about a minute")
    parser.add_argument("--stores", default="folder,seaweedfs")
    args = parser.parse_args()
    artworks, plans = (QUICK_ARTWORKS, QUICK_PLANS) if args.quick else (ARTWORKS, PLANS)
    stores = [s for s in args.stores.split(",") if s]
    if unknown := set(stores) - set(plans):
        parser.error(f"unknown store(s) {', '.join(sorted(unknown))}; known: {', '.join(plans)}")
    figures = asyncio.run(_stores(artworks, {s: plans[s] for s in stores}))
    for name, f in figures["stores"].items():
        report(name, f)
    cli.save(args.json, figures | {"quick": args.quick})


if __name__ == "__main__":
    main()
