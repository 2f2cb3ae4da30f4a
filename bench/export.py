"""A full export in parts through the real worker, beside BDRs: `python -m bench.export`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import statistics
import tempfile
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench import cli
from bench.build import Run, chunks, driving
from bench.runner import service_versions
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from pmd_service.features.exports.job_sql import enqueue_export
from pmd_service.host.vault import artwork_path
from pmd_service.storage.zip_files import ZipFiles
from support import seeding
from support.measures import PeakRss, cpu_seconds, rss_kb
from support.seaweed import Seaweed, create_bucket, running_seaweed
from support.stack import connected, fresh_stack

ARTWORKS, QUICK_ARTWORKS, WARM_ARTWORKS, BDR_ARTWORKS = 3000, 300, 8, 128
PART_BYTES = 256 << 20
# An export's throughput against a BDR's, its RSS growth, a BDR's time to ready beside it.
TARGET = {"throughput": 0.9, "growth_mb": 30.0, "slowdown": 1.5}
# Store: (rounds, BDRs each time). SeaweedFS takes 20 s to a minute an export on two cores.
PLANS = {"folder": (3, 5), "seaweedfs": (2, 6)}
QUICK_PLANS = {"folder": (1, 2), "seaweedfs": (1, 1)}
GAP_S = 0.5  # between two BDRs: the export gets the worker back meanwhile
# BDRs beside an export start between these shares of its artworks built.
BUSY_FROM, BUSY_UNTIL = 0.05, 0.8
# SeaweedFS's data folder with no ZIP left in it, and enough volumes of 256 MB for the run.
SEAWEED_SETTLED_BYTES, SEAWEED_VOLUMES = 64 << 20, 128

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
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + random.Random(seed).randbytes(size - 8))


async def seed_owner(
    conn: asyncpg.Connection, settings: Settings, handle: str, n: int, seed: int
) -> Owner:
    user = await seeding.Factory(conn, settings).user(handle)
    rng = random.Random(seed)
    keys = [uuid.uuid4() for _ in range(n)]
    shards = [f"{i % 64:02x}/{i * 7 % 64:02x}" for i in range(n)]
    sizes = [rng.randrange(900_000, 1_100_000) for _ in range(n)]
    created = [datetime.now(UTC) - timedelta(seconds=i) for i in range(n)]
    ids = PublicIds(settings.sqids_alphabet)
    post_ids = await seeding.posts_with_files(conn, ids, user.id, keys, shards, created, sizes)
    paths = [
        artwork_path(settings.vault_path, s, k, "png") for s, k in zip(shards, keys, strict=True)
    ]
    seeds = [seed * 1_000_000 + i for i in range(n)]
    with ThreadPoolExecutor(2) as pool:  # the writes release the GIL
        await asyncio.to_thread(list, pool.map(_write_random, paths, sizes, seeds))
    await conn.execute("ANALYZE posts; ANALYZE post_files")
    return Owner(user.id, user.sqid, post_ids, paths, sum(sizes))


async def request_export(run: Run, owner: Owner) -> tuple[uuid.UUID, float]:
    """The export's id and the worker's CPU time then."""
    cpu = cpu_seconds(run.worker_pid)
    # As the server inserts one, with the API's defaults (comments and reactions included).
    export_id: uuid.UUID = await seeding.insert_row(
        run.conn,
        "exports",
        user_id=owner.id,
        user_sqid=owner.sqid,
        part_bytes=PART_BYTES,
        artwork_count=len(owner.post_ids),
    )
    await enqueue_export(run.redis, export_id)
    return export_id, cpu


async def export_done(
    run: Run, export: tuple[uuid.UUID, float], owner: Owner, *, read_back: bool = False
) -> dict[str, Any]:
    """The export once ready, checked (`read_back`: one part's SHA-256), its parts removed."""
    export_id, cpu_before = export
    row = await run.until(SQL_EXPORT_ROW, export_id, lambda r: r["status"] == "ready")
    cpu = cpu_seconds(run.worker_pid) - cpu_before
    parts = await run.conn.fetch(SQL_PARTS, export_id)
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
    if read_back:
        part = parts[len(parts) // 2]
        digest = await _sha256(run.zips, part["file_path"], part["file_size_bytes"])
        assert digest == part["sha256"].strip(), (digest, part["sha256"])
    for part in parts:
        await run.zips.remove(part["file_path"])
    return {
        "build_s": row["build_s"],
        "cpu_s": cpu,
        "bytes": row["total_bytes"],
        "parts": len(parts),
        "started_at": row["started_at"].timestamp(),
        "completed_at": row["completed_at"].timestamp(),
    }


async def _sha256(zips: ZipFiles, file_path: str, size: int) -> str:
    digest = hashlib.sha256()
    stored = await zips.locate(file_path)
    if stored.path is not None:
        await asyncio.to_thread(deque, map(digest.update, chunks([stored.path])), 0)
    else:
        async for chunk in zips.chunks(await zips.read(stored, 0, size), 1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _mb_s(builds: list[dict[str, Any]]) -> float:
    """Their bytes over their seconds: a median of short builds would leave slow spells out."""
    return float(sum(b["bytes"] for b in builds) / sum(b["build_s"] for b in builds) / 1e6)


def _cpu_per_gb(builds: list[dict[str, Any]]) -> float:
    return float(sum(b["cpu_s"] for b in builds) / sum(b["bytes"] for b in builds) * 1e9)


def _median_ready(bdrs: list[dict[str, Any]]) -> float:
    return statistics.median([b["to_ready_s"] for b in bdrs]) if bdrs else float("nan")


def _rss(run: Run) -> PeakRss:
    return PeakRss(run.worker_pid, trace_every=0.5)


class Store:
    def __init__(self, run: Run, owner: Owner, weed: Seaweed | None) -> None:
        self.run, self.owner, self.weed = run, owner, weed
        picks = [i * len(owner.post_ids) // BDR_ARTWORKS for i in range(BDR_ARTWORKS)]
        self.posts = [owner.post_ids[i] for i in picks]
        self.bytes = sum(owner.paths[i].stat().st_size for i in picks)

    async def bdr(self) -> dict[str, Any]:
        return await self.run.bdr(self.owner.id, self.owner.sqid, self.posts, self.bytes)

    async def beside_export(
        self, count: int, label: str
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        run, n = self.run, len(self.owner.post_ids)
        export = await request_export(run, self.owner)
        low, high = BUSY_FROM * n, BUSY_UNTIL * n
        await run.until(
            SQL_EXPORT_ROW, export[0], lambda r: r["status"] == "ready" or r["progress_done"] >= low
        )
        bdrs: list[dict[str, Any]] = []
        while len(bdrs) < count:
            row = await run.conn.fetchrow(SQL_EXPORT_ROW, export[0])
            assert row is not None
            if row["status"] != "processing" or row["progress_done"] > high:
                break
            bdrs.append(await self.bdr())
            await asyncio.sleep(GAP_S)
        built = await export_done(run, export, self.owner)
        for b in bdrs:
            b["inside_export"] = (
                built["started_at"] <= b["started_at"] <= b["completed_at"] <= built["completed_at"]
            )
        inside = sum(b["inside_export"] for b in bdrs)
        cli.show(
            f"    {label}, BDRs beside an export",
            {"bdrs": len(bdrs), "inside": inside, "export_s": built["build_s"]},
        )
        return bdrs, built

    async def idle_bdrs(self, count: int) -> list[dict[str, Any]]:
        bdrs = []
        for _ in range(count):
            with _rss(self.run) as rss:
                bdrs.append(await self.bdr() | {"peak_rss_mb": rss.peak / 1024})
            await asyncio.sleep(GAP_S)
        return bdrs


async def measure_store(store: Store, warm: Owner, rounds: int, count: int) -> dict[str, Any]:
    """Each round: idle BDRs, an export alone, idle BDRs, an export with BDRs beside it."""
    run, owner = store.run, store.owner
    # Warm-up: every code path of both jobs loaded, the worker's pools and buffers made.
    await run.bdr(warm.id, warm.sqid, warm.post_ids)
    await store.bdr()
    await export_done(run, await request_export(run, warm), warm)
    await asyncio.to_thread(_settle, store.weed)
    await asyncio.sleep(1.0)  # let the warm-up's garbage go
    baseline = rss_kb(run.worker_pid) / 1024
    idle: list[list[dict[str, Any]]] = []
    alone: list[dict[str, Any]] = []
    busy: list[dict[str, Any]] = []
    busy_peak, samples = 0, 0
    for r in range(rounds):
        idle.append(await store.idle_bdrs(count))
        # The BDRs' files are always in the page cache: read the export's into it too.
        await asyncio.to_thread(deque, chunks(owner.paths), 0)
        export = await request_export(run, owner)
        with _rss(run) as rss:
            built = await export_done(run, export, owner, read_back=r == 0)
        samples = samples or rss.samples  # the first export's
        alone.append(built | {"rss_trace": rss.trace, "rss_peak_mb": rss.peak / 1024})
        await asyncio.to_thread(_settle, store.weed)
        cli.show(f"    round {r + 1}, an export alone", alone[-1])
        idle.append(await store.idle_bdrs(count))
        with _rss(run) as rss:
            bdrs, _ = await store.beside_export(count, f"round {r + 1}")
        busy += bdrs
        busy_peak = max(busy_peak, rss.peak)
        await asyncio.to_thread(_settle, store.weed)
    idle_all = [b for group in idle for b in group]
    inside = [b for b in busy if b["inside_export"]]
    bdr_rate, export_rate = _mb_s(idle_all), _mb_s(alone)
    idle_ready, busy_ready = _median_ready(idle_all), _median_ready(inside)
    return {
        "rounds": rounds,
        "idle_count": len(idle_all),
        "exports": alone,
        "bdr_throughput_mb_s": bdr_rate,
        "export_throughput_mb_s": export_rate,
        "bdr_median_mb_s": statistics.median([_mb_s([b]) for b in idle_all]),
        "bdr_cpu_s_per_gb": _cpu_per_gb(idle_all),
        "export_cpu_s_per_gb": _cpu_per_gb(alone),
        "throughput_ratio": export_rate / bdr_rate,
        # Each export against the idle BDRs just before and just after it.
        "throughput_ratio_by_round": [
            _mb_s([e]) / _mb_s(idle[2 * i] + idle[2 * i + 1]) for i, e in enumerate(alone)
        ],
        "idle_to_ready_s": idle_ready,
        "busy_to_ready_s": busy_ready,
        "busy_inside": len(inside),
        "bdr_slowdown": busy_ready / idle_ready,
        # The first export alone: after one beside BDRs the worker keeps their joint high-water.
        "rss": {
            "baseline_mb": baseline,
            "peak_mb": alone[0]["rss_peak_mb"],
            "growth_mb": alone[0]["rss_peak_mb"] - baseline,
            "samples": samples,
            "bdr_growth_mb": max(b["peak_rss_mb"] for b in idle[0]) - baseline,
            "peak_with_bdrs_mb": busy_peak / 1024,
            "later_peaks_mb": [e["rss_peak_mb"] for e in alone[1:]],
        },
    }


def _settle(weed: Seaweed | None) -> None:
    """Deleted space back and every byte on disk before the next measurement."""
    deadline = time.monotonic() + 60
    while weed is not None:
        weed.vacuum()
        files = (weed.directory / "data").rglob("*")
        if sum(f.stat().st_blocks * 512 for f in files if f.is_file()) < SEAWEED_SETTLED_BYTES:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("SeaweedFS kept the deleted parts' space for 60 s")
        time.sleep(0.25)
    os.sync()


def _remove_leftovers(weed: Seaweed, since: float) -> None:
    """What a stopped `weed server` made outside its folder since `since`: sockets and logs."""
    ports = [int(a.split("=")[1]) for a in weed.args if a.split("=")[0].endswith(".port")]
    logs = Path(tempfile.gettempdir())
    found = [
        path
        for port in ports + [p + 10000 for p in ports]
        for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")
    ]
    if weed.proc is not None:
        found += logs.glob(f"weed.*.log.*.{weed.proc.pid}")
    for path in found:
        with contextlib.suppress(FileNotFoundError):
            if path.lstat().st_mtime >= since:
                path.unlink()
    for link in logs.glob("weed.*"):
        if link.is_symlink() and not link.exists() and link.lstat().st_mtime >= since:
            link.unlink()


async def run(artworks: int, plans: dict[str, tuple[int, int]]) -> dict[str, Any]:
    async with fresh_stack() as settings:
        async with connected(settings.database_url, "pmd-bench") as conn:
            owner = await seed_owner(conn, settings, "exporter", artworks, 1)
            warm = await seed_owner(conn, settings, "warm", WARM_ARTWORKS, 2)
        await asyncio.to_thread(os.sync)  # the vault on disk: no writeback during the rounds
        print(f"seeded {artworks:,} artworks, {owner.bytes / 1e9:.2f} GB", flush=True)
        figures: dict[str, Any] = {
            "artworks": artworks,
            "part_bytes": PART_BYTES,
            "stores": {},
            "artwork_bytes": owner.bytes,
            "servers": list(await service_versions()),
        }
        with contextlib.ExitStack() as stack:
            for name in [n for n in PLANS if n in plans]:  # the folder first
                weed, env = None, {}
                if name == "seaweedfs":  # started only now: idle, it still takes CPU
                    since = time.time() - 1  # file times are coarser than the clock
                    weed = await asyncio.to_thread(
                        stack.enter_context, running_seaweed(SEAWEED_VOLUMES)
                    )
                    stack.callback(_remove_leftovers, weed, since)  # once it is stopped (LIFO)
                    env = weed.env(await create_bucket(weed), "bench/exports")
                print(f"  {name}:", flush=True)
                async with driving(settings, **env) as run:
                    store = Store(run, owner, weed)
                    figures["stores"][name] = await measure_store(store, warm, *plans[name])
    return figures


# The stores measured, in the report's order: name, label, short label.
STORES = (
    ("folder", "folder (`ZIP_PATH`)", "folder"),
    ("seaweedfs", "SeaweedFS (`ZIP_STORE=s3://…`)", "SeaweedFS"),
)


def section(f: dict[str, Any]) -> dict[str, Any]:
    measured = [
        {"name": name, "label": label, "short": short} | f["stores"][name]
        for name, label, short in STORES
        if name in f["stores"]
    ]
    return f | {"measured": measured, "target": TARGET}


if __name__ == "__main__":
    parser = cli.parser("export", __doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke test of about a minute")
    parser.add_argument("--stores", default="folder,seaweedfs")
    args = parser.parse_args()
    artworks, plans = (QUICK_ARTWORKS, QUICK_PLANS) if args.quick else (ARTWORKS, PLANS)
    stores = [s for s in args.stores.split(",") if s]
    if unknown := set(stores) - set(plans):
        parser.error(f"unknown store(s) {', '.join(sorted(unknown))}; known: {', '.join(plans)}")
    figures = asyncio.run(run(artworks, {s: plans[s] for s in stores}))
    for name, f in figures["stores"].items():
        cli.show(name, f)
    cli.save(args.json, figures | {"quick": args.quick})
