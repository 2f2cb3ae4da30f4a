"""ZIP build, the worker's against the seed's algorithm and plain copies: `python -m bench.zip`.

On 128 PNGs of ~1 MB and 128 small ones, each ZIP with a BDR's `manifest-sha256.txt`, with the
build's longest event-loop stall; then RSS growth over a ~1 GB ZIP in a fresh process.
docs/benchmarks.md tells the targets.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from zlib_ng import zlib_ng

from bench import cli, plots
from pmd_service.bdr.job_run import root_manifest
from pmd_service.dev.demo import pixel_art
from pmd_service.zipbuild.build import Entry, build_zip
from support.measures import PeakRss, rss_kb

FILES = 128


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


def copy_floor(paths: list[Path], out: Path, durable: bool = False) -> None:
    with open(out, "wb") as dst:
        for p in paths:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
        if durable:  # what the worker must also do before it may rename the ZIP into place
            dst.flush()
            os.fsync(dst.fileno())


def required_floor(paths: list[Path], out: Path) -> None:
    """What any correct build must do to the bytes, plainly in one pass: copy them, CRC-32 them
    (the ZIP format), SHA-256 each file (the ZIP's manifest-sha256.txt) and the whole (the
    recorded checksum, Repr-Digest), and fsync (durability). With the build's own tools, so the
    floor is no slower than it need be: reads into one reused buffer (a fresh 1 MiB `bytes` a
    read costs page faults) and zlib-ng's CRC-32 (~10x the standard library's)."""
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


def _trailer(added: list[int], skipped: list[tuple[int, str]]) -> list[tuple[str, bytes]]:
    return [("metadata.json", json.dumps({"artworks": added, "skipped": skipped}).encode())]


async def worker_build(paths: list[Path], out: Path) -> float:
    """Build as `process_bdr` does, in a thread, manifest included; the longest event-loop stall
    meanwhile (s)."""
    entries = [Entry(i, f"artworks/{p.name}", path=p) for i, p in enumerate(paths)]
    progress = [0]

    def on_progress(n: int) -> None:  # as process_bdr does: recorded, read by the loop later
        progress[0] = n

    build = asyncio.create_task(
        asyncio.to_thread(
            build_zip, out, entries, _trailer, on_progress, threading.Event(), root_manifest
        )
    )
    loop, stall = asyncio.get_running_loop(), 0.0
    while not build.done():
        before = loop.time()
        await asyncio.sleep(0.001)
        stall = max(stall, loop.time() - before - 0.001)
    await build
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
        "durable_floor_s": lambda out: copy_floor(paths, out, True),
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
    worker = figures["worker_s"]
    print(f"{label}: {len(paths)} files, {total / 1e6:.1f} MB, median of {rounds}: worker "
          f"{worker * 1000:.1f} ms, {figures['seed_s'] / worker:.1f}x faster than the seed's "
          f"algorithm (target >= 25x), {worker / figures['floor_s']:.2f}x a plain copy (target "
          f"<= 2.0x), {worker / figures['durable_floor_s']:.2f}x with fsync, "
          f"{worker / figures['required_floor_s']:.2f}x the required work; longest event-loop "
          f"stall {figures['max_stall_ms']:.1f} ms (target <= 20 ms)")  # fmt: skip
    return figures


def big_zip(paths: list[Path], out: Path, repeat: int) -> dict[str, int]:
    """Run in a fresh process: a ZIP of `paths` `repeat` times over, with the peak RSS growth
    during its build read every 5 ms (ru_maxrss would also count import-time peaks)."""
    named = [(f"artworks/{k}-{p.name}", p) for k in range(repeat) for p in paths]
    entries = [Entry(i, name, path=p) for i, (name, p) in enumerate(named)]
    baseline = rss_kb(os.getpid())
    with PeakRss(lambda: rss_kb(os.getpid()), start=baseline) as rss:
        result = build_zip(out, entries, _trailer, lambda n: None, threading.Event(), root_manifest)
    return {"zip_bytes": result.size, "rss_growth_kb": rss.peak - baseline}


def main() -> None:
    parser = cli.parser("zip", __doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-repeat", type=int, default=8, help="1 GB ZIP = 128 x 1 MB x 8")
    parser.add_argument("--sizes", default="", help="also compare at these counts of ~1 MB files "
                        "(e.g. 16,32,64,128: ZIP size series)")  # fmt: skip
    args = parser.parse_args()
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
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
            big = fresh.submit(big_zip, large[:FILES], work / "big.zip", args.big_repeat).result()
        results["big"] = big
        print(f"1 GB-class ZIP ({big['zip_bytes'] / 1e9:.2f} GB): peak RSS growth "
              f"{big['rss_growth_kb'] / 1024:.1f} MB (target <= 50 MB)")  # fmt: skip
    cli.save(args.json, results)
    os.sync()


PLOT = "zip_build.png"


def plot(figures: dict[str, Any], path: Path) -> None:
    by_size = figures.get("by_size")
    if not by_size:  # figures of a run without `--sizes`
        return
    plt = plots.pyplot()
    mb = [row["bytes"] / 1e6 for row in by_size]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.6))
    for key, label, style in (
        ("seed_s", "seed algorithm (copy to temp dir + zipfile DEFLATED)", "o-"),
        ("worker_s", "worker build (with fsync)", "s-"),
        ("durable_floor_s", "plain copy + fsync", "^--"),
        ("floor_s", "plain copy (floor)", "v--"),
    ):
        left.plot(mb, [row[key] * 1000 for row in by_size], style, label=label)
    left.set_yscale("log")
    plots.plain_log_ticks(left.yaxis)
    left.set_xlabel("ZIP size (artworks of ~1 MB each)")
    left.set(ylabel="build time (ms, log scale), median", title="ZIP build time by ZIP size")
    plots.below(left, ncols=1)
    right.plot(mb, [r["seed_s"] / r["worker_s"] for r in by_size], "o-",
               label="seed ÷ worker (times faster)")  # fmt: skip
    right.plot(mb, [r["worker_s"] / r["floor_s"] for r in by_size], "s-",
               label="worker ÷ plain copy (overhead)")  # fmt: skip
    right.axhline(25, color="C0", linestyle=":", label="target: ≥ 25× faster than seed")
    right.axhline(2, color="C1", linestyle=":", label="target: ≤ 2.0× the copy")
    right.set_yscale("log")
    right.set_yticks([1, 2, 5, 10, 25, 50], ["1×", "2×", "5×", "10×", "25×", "50×"])
    right.set_xlabel("ZIP size (artworks of ~1 MB each)")
    right.set_title("Ratios (blue: higher is better; orange: lower is better)")
    plots.below(right, ncols=1)
    labels = [f"{r['files']} files\n{x:.0f} MB" for r, x in zip(by_size, mb, strict=True)]
    for ax in (left, right):
        plots.log2_x(ax, mb, labels)
    plots.save(plt, fig, path)


if __name__ == "__main__":
    main()
