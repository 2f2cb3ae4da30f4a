"""ZIP build benchmark: `python -m bench.zip`. Not a test: prints figures, exits 0.

In one run, on 128 real PNGs of ~1 MB and on 128 small pixel-art files, times

- the worker's build (`pmd_service.jobs.zip.build.build_zip` in a thread, driven from an event
  loop exactly as `process_bdr` drives it, with the JSON trailer),
- (a) the seed's algorithm: `shutil.copy` of every file into a temp dir, then zipfile DEFLATED,
- (b) the floor: a plain `shutil.copyfileobj` of the same bytes into one file,
- (c) the required work, done plainly in one pass: copy + CRC-32 + SHA-256 + fsync,

interleaved, median of several rounds, and reports the ratios (targets: >= 25x faster than (a),
<= 2.0x (b); (c) shows what part of (b)'s ratio the format and the contract make unavoidable).
During the worker's builds it measures the longest event-loop stall (target <= 20 ms). Then, in
a fresh subprocess, it builds a ~1 GB ZIP and reports peak RSS growth (target <= 50 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cli
from pmd_service.dev.demo import pixel_art
from pmd_service.jobs.zip.build import Entry, build_zip
from support.measures import PeakRss, rss_kb

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


def timed(fn: Callable[..., object], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def compare(label: str, paths: list[Path], work: Path, rounds: int) -> dict[str, float]:
    """Each way of writing `paths`, `rounds` times interleaved: their medians (s)."""
    ways: dict[str, Callable[[Path], object]] = {
        "floor_s": lambda out: copy_floor(paths, out),
        "durable_floor_s": lambda out: copy_floor(paths, out, True),
        "required_floor_s": lambda out: required_floor(paths, out),
        "worker_s": lambda out: stalls.append(asyncio.run(worker_build(paths, out))),
        "seed_s": lambda out: seed_algorithm(paths, out),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    stalls: list[float] = []
    for r in range(rounds):
        for name, way in ways.items():
            times[name].append(timed(way, work / f"{label}-{r}.{name}"))
        with zipfile.ZipFile(work / f"{label}-{r}.worker_s") as zf:
            assert zf.testzip() is None and len(zf.namelist()) == len(paths) + 1
        for f in work.glob(f"{label}-{r}.*"):
            f.unlink()
    total = sum(p.stat().st_size for p in paths)
    figures = {"bytes": total} | {name: statistics.median(t) for name, t in times.items()}
    figures["max_stall_ms"] = max(stalls) * 1000
    worker = figures["worker_s"]
    print(f"{label}: {len(paths)} files, {total / 1e6:.1f} MB, median of {rounds}: worker "
          f"{worker * 1000:.1f} ms, {figures['seed_s'] / worker:.1f}x faster than the seed's "
          f"algorithm (target >= 25x), {worker / figures['floor_s']:.2f}x a plain copy (target "
          f"<= 2.0x), {worker / figures['durable_floor_s']:.2f}x with fsync, "
          f"{worker / figures['required_floor_s']:.2f}x the required work; longest event-loop "
          f"stall {figures['max_stall_ms']:.1f} ms (target <= 20 ms)")  # fmt: skip
    return figures


def rss_child(paths_file: str, out: str, repeat: int) -> None:
    """In a fresh process: build a big ZIP from the same files repeated; print RSS growth.

    RSS is sampled every 5 ms during the build (ru_maxrss would also count import-time peaks).
    """
    paths = [Path(p) for p in Path(paths_file).read_text().split("\n") if p]
    entries = [
        Entry(i, f"artworks/{k}-{p.name}", path=p)
        for i, (k, p) in enumerate((k, p) for k in range(repeat) for p in paths)
    ]
    baseline = rss_kb(os.getpid())
    with PeakRss(lambda: rss_kb(os.getpid()), start=baseline) as rss:
        result = build_zip(Path(out), entries, _trailer, lambda n: None, threading.Event())
    print(json.dumps({"zip_bytes": result.size, "rss_growth_kb": rss.peak - baseline}))


def main() -> None:
    parser = cli.parser("zip", __doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-repeat", type=int, default=8, help="1 GB ZIP = 128 x 1 MB x 8")
    parser.add_argument("--rss-child", nargs=3, metavar=("PATHS", "OUT", "REPEAT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--sizes", default="", help="also compare at these counts of ~1 MB files "
                        "(e.g. 16,32,64,128: ZIP size series)")  # fmt: skip
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
            results["by_size"] = [{"files": n} | (at_128 if n == FILES else compare(
                f"{n} x ~1 MB PNG", large[:n], work, args.rounds)) for n in sizes]  # fmt: skip
        listing = work / "paths.txt"
        listing.write_text("\n".join(str(p) for p in large[:FILES]))
        child = subprocess.run(
            [sys.executable, "-m", "bench.zip", "--rss-child", str(listing), str(work / "big.zip"),
             str(args.big_repeat)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        big: dict[str, int] = json.loads(child.stdout.strip().splitlines()[-1])
        results["big"] = big
        print(f"1 GB-class ZIP ({big['zip_bytes'] / 1e9:.2f} GB): peak RSS growth "
              f"{big['rss_growth_kb'] / 1024:.1f} MB (target <= 50 MB)")  # fmt: skip
    cli.save(args.json, results)
    os.sync()


if __name__ == "__main__":
    main()
