"""Runs one benchmark as its own process and keeps its figures in bench/figures/<name>.json."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cli import changes
from pmd_service.core.redis_client import create_redis
from support.render import revision
from support.stack import CHECKOUT, bench_settings, connected

FIGURES = CHECKOUT / "bench" / "figures"
MACHINE = FIGURES / "machine.json"
SCRATCH = CHECKOUT / ".data" / "bench" / "results"  # git-ignored; kept only on exit 0


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]
    limit_s: int  # killed past it
    about: str = ""  # what it measures, for `python -m bench`'s list
    module: str = ""  # bench.<module>: a mode of another benchmark; dotted: a run, as named

    @property
    def target(self) -> str:
        return self.module if "." in self.module else f"bench.{self.module or self.name}"


# In the order they run: name, arguments, seconds before it is killed, what it measures.
BENCHMARKS = (
    Bench("build", ("--sizes", "16,32,64,128"), 1800, "ZIP builds, in process and by the worker"),
    Bench(
        "build_ab",
        ("--against", "previous"),
        900,
        "the worker's job beside the previous release's, in turns",
        module="build",
    ),
    Bench("posts", ("--depths", "1,5,10,15,19", "--big", "100000"), 900, "the posts list and hide"),
    Bench(
        "posts_ab",
        ("--against", "previous", "--requests", "300"),
        900,
        "the posts list beside the previous release's, in turns",
        module="posts",
    ),
    Bench("filters", (), 600, "a filtered page at 20,000 posts, an action on 10,000"),
    Bench("policies", ("--lifted",), 5400, "100,000 policies due at once, budgets lifted"),
    Bench("policies_night", ("--lifted", "--busy-share", "1"), 5400, "no rest", module="policies"),
    Bench("policies_shipped", (), 5400, "the same as shipped", module="policies"),
    Bench("sse", (), 1800, "1,000 to 20,000 streams on one server: memory, events, storms"),
    Bench("sse_box", ("--box",), 2700, "12,500 to 100,000 streams, 1 to 7 servers", module="sse"),
    Bench(
        "burst_ab",
        ("--box", "--levels", "100000", "--against", "previous", "--runs", "3"),
        3600,
        "the burst at 100,000 streams, these servers and the previous release's in turns",
        module="sse",
    ),
    Bench("page", (), 600, "the dashboard page at 20,000 posts in Debian's Chromium"),
    Bench("store", (), 1200, "SeaweedFS: builds, reads, downloads, stalled readers"),
    Bench("export", (), 1200, "a full export of 3,000 artworks, folder and SeaweedFS"),
    Bench(
        "upgrade",
        ("--upgrade-from", "previous"),
        1800,
        "a rolling upgrade under 4,000 streams (root)",
        module="runs.cluster",
    ),
)
# Run once, their modules gone: each figures file keeps the commit its run names, to rerun it from.
RETIRED = ("mentions", "host_cache", "write_budget", "wal_budget", "scaling", "archive")


@dataclass(frozen=True)
class Saved:
    name: str
    run: dict[str, Any] | None
    figures: Any
    failed: dict[str, Any] | None = None
    # Each setting the run changed from what ships, by its variable; None: not recorded.
    settings: dict[str, Any] | None = None
    retired: bool = False


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def saved(name: str, folder: Path = FIGURES) -> Saved:
    data = read_json(folder / f"{name}.json")
    run, figures, failed, settings = (data.get(k) for k in ("run", "figures", "failed", "settings"))
    return Saved(name, run, figures, failed, settings, name in RETIRED)


def _write(name: str, data: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def run_one(bench: Bench, folder: Path = FIGURES) -> str | None:
    """Runs one benchmark into its file in `folder`: None when it saved figures, else why not."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    out = SCRATCH / f"{bench.name}.json"
    out.unlink(missing_ok=True)
    changes(out).unlink(missing_ok=True)
    argv = ["-m", bench.target, *bench.args]
    command = " ".join(["python", *argv])
    cmd = [sys.executable, *argv, "--json", str(out)]
    print(f"\n=== {' '.join(cmd[1:])} (bounded at {bench.limit_s} s)", flush=True)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    run: dict[str, Any] = {
        "date": date,
        "load_start": f"{os.getloadavg()[0]:.2f}",
        "command": command,
        "machine": host(),
    } | revision()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=CHECKOUT, start_new_session=True)
    try:
        code: int | None = proc.wait(timeout=bench.limit_s)
    except subprocess.TimeoutExpired:  # killed with its children
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    run |= {"load_end": f"{os.getloadavg()[0]:.2f}", "seconds": round(time.monotonic() - started)}
    print(f"=== {bench.name}: {run['seconds']} s, exit {code}", flush=True)
    if code == 0 and out.exists():
        data = {"run": run, "figures": json.loads(out.read_text())}
        if changes(out).exists():  # a run that does not write it leaves its settings unrecorded
            data["settings"] = json.loads(changes(out).read_text())
        _write(bench.name, data, folder)
        return None
    why = f"killed after {bench.limit_s} s" if code is None else f"exited with status {code}"
    failed = {"date": date, "command": command, "why": why}
    _write(bench.name, read_json(folder / f"{bench.name}.json") | {"failed": failed}, folder)
    return why


async def service_versions() -> tuple[str, str]:
    embedded = not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))
    base = await asyncio.to_thread(bench_settings)
    async with connected(base.database_url) as conn, create_redis(base.redis_url) as redis:
        pg = str(await conn.fetchval("SHOW server_version")).split()[0]
        rv = str((await redis.info("server")).get("redis_version", "?"))
    suffix = " (embedded)" if embedded else ""
    return f"PostgreSQL {pg}{suffix}", f"Redis {rv}{suffix}"


def host() -> dict[str, str]:
    """The machine a run runs on, kept with its figures (figures of one page may come from two)."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = [ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": model[0] if model else "unknown CPU",
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": f"{memory / 1024**3:.0f} GiB",
        "os": f"{platform.freedesktop_os_release()['PRETTY_NAME']}, Linux {platform.release()}",
    }


def record_machine() -> None:
    pg, redis = asyncio.run(service_versions())
    info = host() | {
        "python": f"Python {platform.python_version()}",
        "postgres": pg,
        "redis": redis,
        "settings": {},  # the machine's record changes no setting; each run's file says its own
    }
    FIGURES.mkdir(parents=True, exist_ok=True)
    MACHINE.write_text(json.dumps(info, indent=2) + "\n")
