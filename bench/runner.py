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

from support.stack import CHECKOUT

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
        """The module it runs: bench.<module or name>, or `module` if dotted (runs.cluster)."""
        return self.module if "." in self.module else f"bench.{self.module or self.name}"

    @property
    def argv(self) -> list[str]:
        return ["-m", self.target, *self.args]

    @property
    def command(self) -> str:
        return " ".join(["python", *self.argv])


@dataclass(frozen=True)
class Saved:
    name: str
    run: dict[str, Any] | None
    figures: Any
    failed: dict[str, Any] | None = None


def saved(name: str, folder: Path = FIGURES) -> Saved:
    path = folder / f"{name}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    return Saved(name, data.get("run"), data.get("figures"), data.get("failed"))


def _write(name: str, data: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def run_one(bench: Bench, folder: Path = FIGURES) -> str | None:
    """Runs one benchmark into its file in `folder`: None when it saved figures, else why not."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    out = SCRATCH / f"{bench.name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, *bench.argv, "--json", str(out)]
    print(f"\n=== {' '.join(cmd[1:])} (bounded at {bench.limit_s} s)", flush=True)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    run: dict[str, Any] = {
        "date": date,
        "load_start": f"{os.getloadavg()[0]:.2f}",
        "command": bench.command,
    }
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
        _write(bench.name, {"run": run, "figures": json.loads(out.read_text())}, folder)
        return None
    why = f"killed after {bench.limit_s} s" if code is None else f"exited with status {code}"
    before = folder / f"{bench.name}.json"
    old = json.loads(before.read_text()) if before.exists() else {}
    _write(bench.name, old | {"failed": {"date": date, "command": bench.command, "why": why}},
           folder)  # fmt: skip
    return why


async def service_versions() -> tuple[str, str]:
    from pmd_service.core.redis_client import create_redis
    from support.stack import bench_settings, connected

    embedded = not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))
    base = await asyncio.to_thread(bench_settings)
    async with connected(base.database_url) as conn, create_redis(base.redis_url) as redis:
        pg = str(await conn.fetchval("SHOW server_version")).split()[0]
        rv = str((await redis.info("server")).get("redis_version", "?"))
    suffix = " (embedded)" if embedded else ""
    return f"PostgreSQL {pg}{suffix}", f"Redis {rv}{suffix}"


def record_machine() -> None:
    pg, redis = asyncio.run(service_versions())
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = [ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    info = {
        "cpu": model[0] if model else "unknown CPU",
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": f"{memory / 1024**3:.0f} GiB",
        "os": f"{platform.freedesktop_os_release()['PRETTY_NAME']}, Linux {platform.release()}",
        "python": f"Python {platform.python_version()}",
        "postgres": pg,
        "redis": redis,
    }
    FIGURES.mkdir(parents=True, exist_ok=True)
    MACHINE.write_text(json.dumps(info, indent=2) + "\n")
