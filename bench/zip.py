"""ZIP build benchmark: `python -m bench.zip`. Not a test: prints figures, exits 0.

In one run, on 128 real PNGs of ~1 MB and on 128 small pixel-art files, times

- the worker's build (`pmd_service.jobs.zip.build.build_zip` in a thread, driven from an event
  loop exactly as `process_bdr` drives it, with the JSON trailer),
- (a) the seed's algorithm: `shutil.copy` of every file into a temp dir, then zipfile DEFLATED,
- (b) the floor: a plain `shutil.copyfileobj` of the same bytes into one file,
- (c) the required work, done plainly in one pass: copy + CRC-32 + SHA-256 + fsync,

interleaved, median of several rounds, and reports the ratios (targets: >= 25x faster than (a),
<= 2.0x (b); (c) shows what part of (b)'s ratio the format and the contract make unavoidable). During the worker's builds it measures the longest event-loop stall (target
<= 20 ms). Then, in a fresh subprocess, it builds a ~1 GB ZIP and reports peak RSS growth
(target <= 50 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

from bench import cli
from pmd_service.dev.demo import pixel_art
from pmd_service.jobs.zip.build import Entry, build_zip
from support.measures import PeakRss

FILES = 128


def make_large_pngs(folder: Path, n: int) -> list[Path]:
    """Real PNGs of ~1 MB: noise does not compress, like detailed artwork."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"large{i:03d}.png"
        if not path.exists():
            img = Image.frombytes("RGB", (580, 580), random.Random(i).randbytes(580 * 580 * 3))
            img.save(path, "PNG", compress_level=1)
        paths.append(path)
    return paths


def make_small_pixel_art(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    paths = []
    for i in range(n):
        path = folder / f"small{i:03d}.png"
        if not path.exists():
            path.write_bytes(pixel_art(rng, 16, 4, "png"))
        paths.append(path)
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


def copy_floor(paths: list[Path], out: Path, durable: bool = False) -> None:
    with open(out, "wb") as dst:
        for p in paths:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
        if durable:  # what the worker must also do before it may rename the ZIP into place
            dst.flush()
            os.fsync(dst.fileno())


def required_floor(paths: list[Path], out: Path) -> None:
    """What any correct build must do to the bytes, done plainly in one pass: copy them, CRC-32
    them (the ZIP format), SHA-256 them (the recorded checksum) and fsync (durability)."""
    digest = hashlib.sha256()
    with open(out, "wb") as dst:
        for p in paths:
            crc = 0
            with open(p, "rb") as src:
                while chunk := src.read(1 << 20):
                    crc = zlib.crc32(chunk, crc)
                    digest.update(chunk)
                    dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())


def _trailer(added: list[int], skipped: list[tuple[int, str]]) -> list[tuple[str, bytes]]:
    return [("metadata.json", json.dumps({"artworks": added, "skipped": skipped}).encode())]


async def worker_build(paths: list[Path], out: Path) -> float:
    """Build as the worker does; returns the longest event-loop stall seen meanwhile (s)."""
    entries = [Entry(i, f"artworks/{p.name}", path=p) for i, p in enumerate(paths)]
    loop = asyncio.get_running_loop()
    stall = 0.0
    done = threading.Event()

    async def watch() -> None:
        nonlocal stall
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(0.001)
            stall = max(stall, loop.time() - before - 0.001)

    watcher = asyncio.create_task(watch())
    built = [0]

    def on_progress(n: int) -> None:  # as process_bdr does: recorded, read by the loop later
        built[0] = n

    await asyncio.to_thread(build_zip, out, entries, _trailer, on_progress, threading.Event())
    done.set()
    await watcher
    return stall


def timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def compare(label: str, paths: list[Path], work: Path, rounds: int) -> dict[str, float]:
    seed_t, floor_t, durable_t, required_t, worker_t, stalls = [], [], [], [], [], []
    for r in range(rounds):
        out = work / f"{label}-{r}"
        floor_t.append(timed(copy_floor, paths, out.with_suffix(".copy")))
        durable_t.append(timed(copy_floor, paths, out.with_suffix(".fsync"), True))
        required_t.append(timed(required_floor, paths, out.with_suffix(".required")))
        start = time.perf_counter()
        stalls.append(asyncio.run(worker_build(paths, out.with_suffix(".zip"))))
        worker_t.append(time.perf_counter() - start)
        seed_t.append(timed(seed_algorithm, paths, out.with_suffix(".seed.zip")))
        with zipfile.ZipFile(out.with_suffix(".zip")) as zf:
            assert zf.testzip() is None and len(zf.namelist()) == len(paths) + 1
        for f in work.glob(f"{label}-{r}*"):
            f.unlink()
    total = sum(p.stat().st_size for p in paths)
    figures = {
        "bytes": total,
        "seed_s": statistics.median(seed_t),
        "floor_s": statistics.median(floor_t),
        "durable_floor_s": statistics.median(durable_t),
        "required_floor_s": statistics.median(required_t),
        "worker_s": statistics.median(worker_t),
        "max_stall_ms": max(stalls) * 1000,
    }
    print(
        f"{label}: {len(paths)} files, {total / 1e6:.1f} MB, median of {rounds}\n"
        f"  seed algorithm (copy + DEFLATED) {figures['seed_s'] * 1000:9.1f} ms\n"
        f"  plain copy (floor)               {figures['floor_s'] * 1000:9.1f} ms\n"
        f"  plain copy + fsync               {figures['durable_floor_s'] * 1000:9.1f} ms\n"
        f"  copy + CRC-32 + SHA-256 + fsync  {figures['required_floor_s'] * 1000:9.1f} ms\n"
        f"  worker build                     {figures['worker_s'] * 1000:9.1f} ms\n"
        f"  worker vs seed: {figures['seed_s'] / figures['worker_s']:.1f}x faster (target >= 25x)\n"
        f"  worker / floor: {figures['worker_s'] / figures['floor_s']:.2f}x (target <= 2.0x); "
        f"/ copy + fsync: {figures['worker_s'] / figures['durable_floor_s']:.2f}x; "
        f"/ required work: {figures['worker_s'] / figures['required_floor_s']:.2f}x\n"
        f"  longest event-loop stall during the build: {figures['max_stall_ms']:.1f} ms (target <= 20 ms)"
    )
    return figures


def _rss_kb() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() // 1024


def rss_child(paths_file: str, out: str, repeat: int) -> None:
    """In a fresh process: build a big ZIP from the same files repeated; print RSS growth.

    RSS is sampled every 5 ms during the build (ru_maxrss would also count import-time peaks).
    """
    paths = [Path(p) for p in Path(paths_file).read_text().split("\n") if p]
    entries = [
        Entry(i, f"artworks/{k}-{p.name}", path=p)
        for i, (k, p) in enumerate((k, p) for k in range(repeat) for p in paths)
    ]
    baseline = _rss_kb()
    with PeakRss(_rss_kb, start=baseline) as rss:
        result = build_zip(Path(out), entries, _trailer, lambda n: None, threading.Event())
    print(json.dumps({"zip_bytes": result.size, "rss_growth_kb": rss.peak - baseline}))


def main() -> None:
    parser = cli.parser("zip", __doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-repeat", type=int, default=8, help="1 GB ZIP = 128 x 1 MB x 8")
    parser.add_argument(
        "--rss-child", nargs=3, metavar=("PATHS", "OUT", "REPEAT"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--sizes",
        default="",
        help="also compare at these counts of ~1 MB files (e.g. 16,32,64,128: ZIP size series)",
    )
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], args.rss_child[1], int(args.rss_child[2]))
        return

    cache = Path(tempfile.gettempdir()) / "pmd-bench-zip-inputs"
    with tempfile.TemporaryDirectory(prefix="pmd-bench-zip-") as tmp:
        work = Path(tmp)
        print(f"preparing inputs in {cache} …", flush=True)
        sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
        large = make_large_pngs(cache / "large", max([FILES, *sizes]))
        small = make_small_pixel_art(cache / "small", FILES)
        at_128 = compare("128 x ~1 MB PNG", large[:FILES], work, args.rounds)
        results: dict[str, object] = {
            "large": at_128,
            "small": compare("128 small pixel-art PNG", small, work, args.rounds),
        }
        if sizes:  # the same ~1 MB files, by count: how each approach scales with ZIP size
            results["by_size"] = [
                {"files": n}
                | (
                    at_128
                    if n == FILES
                    else compare(f"{n} x ~1 MB PNG", large[:n], work, args.rounds)
                )
                for n in sizes
            ]
        listing = work / "paths.txt"
        listing.write_text("\n".join(str(p) for p in large[:FILES]))
        child = subprocess.run(
            [sys.executable, "-m", "bench.zip", "--rss-child", str(listing), str(work / "big.zip"),
             str(args.big_repeat)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        big: dict[str, int] = json.loads(child.stdout.strip().splitlines()[-1])
        results["big"] = big
        print(
            f"1 GB-class ZIP ({big['zip_bytes'] / 1e9:.2f} GB): peak RSS growth "
            f"{big['rss_growth_kb'] / 1024:.1f} MB (target <= 50 MB)"
        )
    cli.save(args.json, results)
    os.sync()


if __name__ == "__main__":
    main()
