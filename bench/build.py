"""The ZIP build, in process and through the real worker (its time, its RSS): `python -m
bench.build`; `--against REV`: the worker's job only, beside REV's worker, in turns."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from arq.connections import ArqRedis
from zlib_ng import zlib_ng

from bench import cli
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.dev.demo import pixel_art
from pmd_service.features.bdr.archive import root_manifest
from pmd_service.features.bdr.job_sql import enqueue_bdr
from pmd_service.sse.hub import CHANNEL
from pmd_service.storage.zip_files import ZipFiles
from pmd_service.storage.zip_names import own_zip_path
from pmd_service.zipbuild.build import Entry, build, file_sink
from support import seeding
from support.measures import PeakRss, cpu_seconds, rss_kb
from support.release import CURRENT, install
from support.stack import CHECKOUT, WORKER, connected, fresh_stack, start_worker, stop

T = TypeVar("T")
FILES = 128
INPUTS = Path(tempfile.gettempdir()) / "pmd-bench-zip-inputs"  # made once, kept
BIG_FILES, BIG_FILE_BYTES = 128, 8 << 20  # a ~1 GB BDR
WAIT_S = 600
PNG = b"\x89PNG\r\n\x1a\n"  # a PNG's signature: the bytes after it are noise
SQL_BDR_ROW = """
SELECT status, file_path, file_size_bytes, skipped, error_message, created_at, started_at,
       completed_at, extract(epoch FROM completed_at - created_at)::float8 AS to_ready_s,
       extract(epoch FROM completed_at - started_at)::float8 AS build_s
FROM batch_download_requests WHERE id = $1
"""


def make_large_pngs(folder: Path, n: int) -> list[Path]:
    """Real PNGs of ~1 MB: noise does not compress, like detailed artwork."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"large{i:03d}.png" for i in range(n)]
    for i, path in enumerate(paths):
        if not path.exists():
            img = Image.frombytes("RGB", (580, 580), random.Random(i).randbytes(580 * 580 * 3))
            img.save(path, "PNG", compress_level=1)
    return paths


def make_small_pixel_art(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    paths = [folder / f"small{i:03d}.png" for i in range(n)]
    for path in paths:
        if not path.exists():
            path.write_bytes(pixel_art(rng, 16, 4, "png"))
    return paths


def seed_algorithm(paths: list[Path], out: Path) -> None:
    """The seed's approach, reproduced: copy everything to a temp dir, then zipfile DEFLATED."""
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        artworks = Path(tmp) / "artworks"
        artworks.mkdir()
        for p in paths:
            shutil.copy(p, artworks / p.name)
        (Path(tmp) / "metadata.json").write_text(json.dumps({"artworks": [p.name for p in paths]}))
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in artworks.iterdir():
                zf.write(f, f"artworks/{f.name}")
            zf.write(Path(tmp) / "metadata.json", "metadata.json")


def chunks(paths: list[Path], size: int = 1 << 20) -> Iterator[bytes]:
    for path in paths:
        with open(path, "rb", buffering=0) as source:
            while chunk := source.read(size):
                yield chunk


def copy_floor(paths: list[Path], out: Path) -> None:
    with open(out, "wb") as dst:
        for p in paths:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)


def required_floor(paths: list[Path], out: Path) -> None:
    """What any correct build must do to the bytes (copy, CRC-32, SHA-256, fsync) in one pass."""
    whole = hashlib.sha256()
    buffer = bytearray(1 << 20)
    with open(out, "wb", buffering=0) as dst:
        for p in paths:
            crc, entry = 0, hashlib.sha256()
            with open(p, "rb", buffering=0) as src:
                while size := src.readinto(buffer):
                    chunk = memoryview(buffer)[:size]
                    crc = zlib_ng.crc32(chunk, crc)
                    entry.update(chunk)
                    whole.update(chunk)
                    dst.write(chunk)
        os.fsync(dst.fileno())


def trailer(added: list[int], skipped: list[tuple[int, str]]) -> list[tuple[str, bytes]]:
    return [("metadata.json", json.dumps({"artworks": added, "skipped": skipped}).encode())]


async def worker_build(paths: list[Path], out: Path) -> float:
    """Build as `process_bdr` does, in a thread: the longest event-loop stall meanwhile (s)."""
    entries = [Entry(i, f"artworks/{p.name}", path=p) for i, p in enumerate(paths)]
    progress = [0]

    def on_progress(n: int) -> None:  # as process_bdr does: recorded, read by the loop later
        progress[0] = n

    args = (file_sink(out), entries, trailer, on_progress, threading.Event())
    building = asyncio.create_task(asyncio.to_thread(build, *args, closing=root_manifest))
    loop, stall = asyncio.get_running_loop(), 0.0
    while not building.done():
        before = loop.time()
        await asyncio.sleep(0.001)
        stall = max(stall, loop.time() - before - 0.001)
    await building
    return stall


def timed(fn: Callable[..., object], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def compare(label: str, paths: list[Path], work: Path, rounds: int) -> dict[str, float]:
    """Each way of writing `paths`, `rounds` times interleaved: their medians (s)."""
    stalls: list[float] = []
    ways: dict[str, Callable[[Path], object]] = {
        "floor_s": lambda out: copy_floor(paths, out),
        "required_floor_s": lambda out: required_floor(paths, out),
        "worker_s": lambda out: stalls.append(asyncio.run(worker_build(paths, out))),
        "seed_s": lambda out: seed_algorithm(paths, out),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for r in range(rounds):
        for name, way in ways.items():
            times[name].append(timed(way, work / f"{label}-{r}.{name}"))
        with zipfile.ZipFile(work / f"{label}-{r}.worker_s") as zf:
            # The artworks, metadata.json and manifest-sha256.txt.
            assert zf.testzip() is None and len(zf.namelist()) == len(paths) + 2
        for f in work.glob(f"{label}-{r}.*"):
            f.unlink()
    total = sum(p.stat().st_size for p in paths)
    figures = {"bytes": total} | {name: statistics.median(t) for name, t in times.items()}
    figures["max_stall_ms"] = max(stalls) * 1000
    cli.show(f"{label}, medians of {rounds}", figures)
    return figures


def in_process(
    large: list[Path], small: list[Path], sizes: list[int], work: Path, rounds: int
) -> dict[str, Any]:
    at_128 = compare("128 x ~1 MB PNG", large[:FILES], work, rounds)
    results: dict[str, Any] = {
        "large": at_128,
        "small": compare("128 small pixel-art PNG", small, work, rounds),
    }
    if sizes:  # the same ~1 MB files, by count: how each approach scales with ZIP size
        results["by_size"] = [
            {"files": n}
            | (at_128 if n == FILES else compare(f"{n} x ~1 MB PNG", large[:n], work, rounds))
            for n in sizes
        ]
    return results


@dataclass
class Run:
    conn: asyncpg.Connection
    redis: ArqRedis
    doorbell: asyncio.Queue[str]
    zips: ZipFiles
    worker_pid: int

    async def until(
        self, sql: str, row_id: uuid.UUID, done: Callable[[asyncpg.Record], bool]
    ) -> asyncpg.Record:
        """The row once `done(row)`, read again at each NOTIFY or every second (not polled)."""
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

    async def bdr(
        self,
        user: int,
        sqid: str | None,
        post_ids: list[int],
        min_bytes: int = 0,
        *,
        comments: bool = False,
        keep: bool = False,
    ) -> dict[str, Any]:
        """One BDR as the server requests it, until ready; its ZIP checked, removed unless `keep`."""
        cpu = cpu_seconds(self.worker_pid)
        both = dict.fromkeys(("include_comments", "include_reactions"), comments)
        bdr_id = await seeding.bdr_row(self.conn, user, post_ids, user_sqid=sqid, **both)
        await enqueue_bdr(self.redis, bdr_id)
        row = await self.until(SQL_BDR_ROW, bdr_id, lambda r: r["status"] == "ready")
        cpu = cpu_seconds(self.worker_pid) - cpu
        assert row["skipped"] == [] and row["file_size_bytes"] >= min_bytes, dict(row)
        stored = await self.zips.locate(row["file_path"])
        assert stored.size == row["file_size_bytes"], (stored.size, row["file_size_bytes"])
        if not keep:
            await self.zips.remove(row["file_path"])
        return {
            "id": bdr_id,
            "to_ready_s": row["to_ready_s"],
            "build_s": row["build_s"],
            "cpu_s": cpu,
            "bytes": row["file_size_bytes"],
            "started_at": row["started_at"].timestamp(),
            "completed_at": row["completed_at"].timestamp(),
        } | ({"file_path": row["file_path"]} if keep else {})


@contextlib.asynccontextmanager
async def driving(
    settings: Settings, argv: list[str] = WORKER, /, **env: str
) -> AsyncIterator[Run]:
    """A worker (`argv`: this checkout's, or a release's) on `settings`, and what drives it."""
    env = cli.service_env(settings, **env)
    worker = start_worker(env, argv)
    doorbell: asyncio.Queue[str] = asyncio.Queue()
    try:
        async with (
            connected(settings.database_url, "pmd-bench") as conn,
            connected(settings.database_url, "pmd-bench-listen") as listener,
            create_redis(settings.redis_url) as redis,
        ):
            await listener.add_listener(CHANNEL, lambda *args: doorbell.put_nowait(args[3]))
            yield Run(conn, redis, doorbell, ZipFiles(Settings.from_env(env)), worker.pid)
    finally:
        stop(worker)


async def seed_user(
    conn: Any, settings: Settings, handle: str, files: list[Path]
) -> tuple[seeding.UserRow, list[int]]:
    """A user with an artwork of each file: the user, the posts' ids."""
    seed = seeding.Factory(conn, settings)
    owner = await seed.user(handle)
    posts = [
        await seed.post(
            owner,
            title=f"{handle} {i}",
            data=source.read_bytes(),
            shard=f"{i % 64:02x}/{i * 7 % 64:02x}",
        )
        for i, source in enumerate(files)
    ]
    return owner, [p.id for p in posts]


async def jobs_and_floors(
    run: Run, settings: Settings, owner: int, post_ids: list[int], files: list[Path], n: int
) -> list[tuple[float, float]]:
    """`n` BDRs of `files`, each with the one-pass floor timed after it: (job_s, floor_s)."""
    (scratch := settings.zip_path.parent / "scratch").mkdir(exist_ok=True)
    pairs = []
    for _ in range(n):
        job_s = (await run.bdr(owner, None, post_ids))["build_s"]
        floor = scratch / "floor.bin"
        pairs.append((job_s, await asyncio.to_thread(timed, required_floor, files, floor)))
    return pairs


async def job(
    run: Run, settings: Settings, name: str, files: list[Path], rounds: int
) -> dict[str, Any]:
    owner, post_ids = await seed_user(run.conn, settings, name, files)
    warmed = rounds + 2  # the first two warm up
    pairs = (await jobs_and_floors(run, settings, owner.id, post_ids, files, warmed))[2:]
    return {
        "bytes": sum(p.stat().st_size for p in files),
        "job_s": statistics.median(j for j, _ in pairs),
        "floor_s": statistics.median(f for _, f in pairs),
        "rounds": rounds,
    }


async def rss_growth(
    run: Run, warm: Awaitable[Any], build: Awaitable[T]
) -> tuple[dict[str, float], T]:
    """The worker's RSS growth during `build` over where it settled after `warm`, and its result."""
    await warm
    await asyncio.sleep(1.0)
    baseline = rss_kb(run.worker_pid)
    started = time.perf_counter()
    with PeakRss(run.worker_pid, baseline) as rss:
        result = await build
    return {
        "baseline_rss_mb": baseline / 1024,
        "peak_rss_mb": rss.peak / 1024,
        "growth_mb": (rss.peak - baseline) / 1024,
        "build_s": time.perf_counter() - started,
    }, result


async def comment_thread(run: Run, settings: Settings, comments: int) -> dict[str, Any]:
    seeder = seeding.Factory(run.conn, settings)
    user = await seeder.user("chatty")
    warm, big = [
        (await seeder.post(user, title=t, shard="ab", data=PNG + uuid.uuid4().bytes * 256)).id
        for t in ("warm-up", "the big thread")
    ]
    await run.conn.execute(seeding.SQL_BULK_COMMENTS, warm, user.id, 100, timeout=600)
    await run.conn.execute(seeding.SQL_BULK_COMMENTS, big, user.id, comments, timeout=600)
    await run.conn.execute(seeding.SQL_BULK_REACTIONS, big, 3000)
    await run.conn.execute("ANALYZE comments")
    visible = await run.conn.fetchval(
        "SELECT count(*) FROM comments WHERE post_id = $1 AND NOT hidden_by_mod", big
    )
    figures, built = await rss_growth(
        run,
        run.bdr(user.id, user.sqid, [warm], comments=True),
        run.bdr(user.id, user.sqid, [big], comments=True, keep=True),
    )
    with zipfile.ZipFile(own_zip_path(settings.zip_path, built["file_path"])) as archive:
        assert archive.testzip() is None
        info = archive.getinfo("comments.json")
        with archive.open(info) as f:
            in_zip = sum(len(t) for t in json.load(f)["comments_by_artwork"].values())
    assert in_zip == visible, (in_zip, visible)
    return figures | {
        "comments": comments,
        "visible_comments": visible,
        "comments_json_bytes": info.file_size,
    }


async def big_bdr(
    run: Run, settings: Settings, *, keep: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ~1 GB BDR built by the real worker: its RSS figures, and the BDR."""
    factory, rng = seeding.Factory(run.conn, settings), random.Random(11)
    owner = await factory.user(f"big{uuid.uuid4().hex[:6]}")
    post_ids = []
    for i in range(BIG_FILES + 1):
        data = PNG + rng.randbytes((BIG_FILE_BYTES if i else 4096) - len(PNG))
        post = await factory.post(owner, title=f"big {i}", data=data, shard=f"big/{i % 64:02x}")
        post_ids.append(post.id)
    figures, built = await rss_growth(
        run,
        run.bdr(owner.id, owner.sqid, post_ids[:1]),
        run.bdr(owner.id, owner.sqid, post_ids[1:], keep=keep),
    )
    await asyncio.to_thread(shutil.rmtree, settings.vault_path / "big")
    return figures | {"zip_bytes": built["bytes"]}, built | {"sqid": owner.sqid}


async def with_worker(inputs: dict[str, list[Path]], rounds: int, comments: int) -> dict[str, Any]:
    async with fresh_stack() as settings, driving(settings, BDR_DAILY_LIMIT="10000") as run:
        jobs = {
            name: await job(run, settings, name, files, rounds) for name, files in inputs.items()
        }
        thread = await comment_thread(run, settings, comments)
        big, _ = await big_bdr(run, settings)
        return {"job": jobs, "comments": thread, "big": big}


TURN = 2  # timed BDRs of a release's turn, after one that warms its worker up


async def job_against(rev: str, rounds: int) -> dict[str, Any]:
    """`job()` by this checkout's worker and `rev`'s on one schema, a turn each, order alternating."""
    files = make_large_pngs(INPUTS / "large", FILES)
    times: dict[str, list[tuple[float, float]]] = {"this": [], "baseline": []}
    (CHECKOUT / ".data").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CHECKOUT / ".data") as folder:
        other = await asyncio.to_thread(install, rev, Path(folder))
        async with fresh_stack() as settings:
            async with connected(settings.database_url, "pmd-bench") as conn:
                owner, post_ids = await seed_user(conn, settings, "large", files)
            sides = [("this", CURRENT), ("baseline", other)]
            for r in range(rounds):
                for side, release in sides[:: -1 if r % 2 else 1]:
                    argv, env = release.argv("worker"), release.env | {"BDR_DAILY_LIMIT": "10000"}
                    async with driving(settings, argv, **env) as run:
                        turn = jobs_and_floors(run, settings, owner.id, post_ids, files, 1 + TURN)
                        times[side] += (await turn)[1:]
    out: dict[str, Any] = {"this": CURRENT.name, "baseline": other.name, "rounds": rounds}
    out |= {"per_round": TURN, "bytes": sum(p.stat().st_size for p in files), "job": {}}
    for side, pairs in times.items():
        ratios = [job_s / floor_s for job_s, floor_s in pairs]
        out["job"][side] = {
            "job_s": statistics.median(j for j, _ in pairs),
            "floor_s": statistics.median(f for _, f in pairs),
            "ratio": statistics.median(ratios),  # of each BDR to the floor timed after it
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
        cli.show(f"the real worker's job, {out[side]}", out["job"][side])
    return out


if __name__ == "__main__":
    parser = cli.parser("build", __doc__)
    parser.add_argument("--rounds", type=int, default=3, help="in-process rounds of each size")
    parser.add_argument(
        "--sizes",
        default="",
        help="also compare at these counts of ~1 MB files (e.g. 16,32,64,128: ZIP size series)",
    )
    parser.add_argument("--job-rounds", type=int, default=7, help="the real worker's jobs")
    parser.add_argument("--comments", type=int, default=200_000)
    parser.add_argument("--against", metavar="REV", help="only the job, beside REV's worker")
    args = parser.parse_args()
    if args.against:
        cli.save(args.json, asyncio.run(job_against(args.against, args.job_rounds)))
        raise SystemExit(0)
    sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
    print(f"preparing inputs in {INPUTS} …", flush=True)
    large = make_large_pngs(INPUTS / "large", max([FILES, *sizes]))
    small = make_small_pixel_art(INPUTS / "small", FILES)
    with tempfile.TemporaryDirectory(prefix="pmd-bench-zip-") as tmp:
        results = in_process(large, small, sizes, Path(tmp), args.rounds)
    results |= asyncio.run(
        with_worker({"large": large[:FILES], "small": small}, args.job_rounds, args.comments)
    )
    for part in ("job", "comments", "big"):
        cli.show(f"the real worker, {part}", results[part])
    cli.save(args.json, results)
    os.sync()
