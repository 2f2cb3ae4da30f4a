"""Running one benchmark as its own process, and keeping the figures it saved.

Each benchmark runs as `python -m bench.<name> ... --json FILE` in its own session, killed with
its children if it overruns its time limit. What it wrote is kept in `bench/figures/<name>.json`,
which is committed: the docs are rendered from those files alone (bench/report.py,
bench/scaling_doc.py), so anyone can render them again and a test can hold the docs to them.
Each file says how its figures were measured beside them:

    {"run": {"date", "load_start", "load_end", "seconds", "command"}, "figures": ...}

and, when a later run of the same benchmark failed, `"failed": {"date", "command", "why"}`
beside the figures of the run before (a failed rerun never deletes figures). `machine.json`
there has the hardware and the servers' versions of the last `bench.run_all`.
"""

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
# Where a benchmark writes while it runs (git-ignored): kept only when it exits 0.
SCRATCH = CHECKOUT / ".data" / "bench" / "results"


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]
    limit_s: int  # wall-clock bound; the run is killed past it
    module: str = ""  # bench.<module> runs it, when that is not bench.<name> (a mode of one)

    @property
    def argv(self) -> list[str]:
        return ["-m", f"bench.{self.module or self.name}", *self.args]

    @property
    def command(self) -> str:
        return " ".join(["python", *self.argv])


@dataclass(frozen=True)
class Saved:
    """A benchmark's committed file: its figures (None: never measured) and their run."""

    name: str
    run: dict[str, Any] | None
    figures: Any
    failed: dict[str, Any] | None = None
    recovered: str | None = None  # how figures lost before they were committed were recovered


def path_of(name: str, folder: Path = FIGURES) -> Path:
    return folder / f"{name}.json"


def saved(name: str, folder: Path = FIGURES) -> Saved:
    path = path_of(name, folder)
    if not path.exists():
        return Saved(name, None, None)
    data = json.loads(path.read_text())
    return Saved(name, data.get("run"), data.get("figures"), data.get("failed"),
                 data.get("recovered"))  # fmt: skip


def _write(name: str, data: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path_of(name, folder).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def bounded(cmd: list[str], limit_s: float, **popen: Any) -> tuple[int | None, str | None]:
    """Runs `cmd` in its own session: its exit status (None: killed past `limit_s`, with the
    server and worker processes it started) and its output, when `popen` captures it."""
    proc = subprocess.Popen(cmd, cwd=CHECKOUT, start_new_session=True, text=True, **popen)
    try:
        out, _ = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return None, proc.communicate()[0]
    return proc.returncode, out


def run_one(bench: Bench, folder: Path = FIGURES) -> str | None:
    """Runs one benchmark; None when it wrote its figures, else why not. Its file in `folder`
    then holds the new figures with their run, or (on failure) the old ones and the failure;
    no other benchmark's file changes."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    out = SCRATCH / f"{bench.name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, *bench.argv, "--json", str(out)]
    print(f"\n=== {' '.join(cmd[1:])} (bounded at {bench.limit_s} s)", flush=True)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    entry: dict[str, Any] = {"date": date, "load_start": _load(), "command": bench.command}
    started = time.monotonic()
    code, _ = bounded(cmd, bench.limit_s)
    entry |= {"load_end": _load(), "seconds": round(time.monotonic() - started)}
    print(f"=== {bench.name}: {entry['seconds']} s, exit {code}", flush=True)
    if code is None:
        why = f"killed after {bench.limit_s} s"
    elif code == 0 and out.exists():
        _write(bench.name, {"run": entry, "figures": json.loads(out.read_text())}, folder)
        return None
    else:
        why = f"exited with status {code}"
    before = path_of(bench.name, folder)
    old = json.loads(before.read_text()) if before.exists() else {}
    failed = {"date": date, "command": bench.command, "why": why}
    _write(bench.name, old | {"failed": failed}, folder)
    return why


async def service_versions() -> tuple[str, str]:
    """PostgreSQL and Redis versions of the servers the benchmarks use."""
    import asyncpg

    from pmd_service.core.queue import create_redis
    from support.stack import bench_settings

    embedded = not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))
    base = await asyncio.to_thread(bench_settings)
    conn = await asyncpg.connect(base.database_url)
    try:
        pg = str(await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()
    redis = create_redis(base.redis_url)
    try:
        info = await redis.info("server")
        rv = str(info.get("redis_version", "?"))
    finally:
        await redis.aclose()
    suffix = " (embedded)" if embedded else ""
    return f"PostgreSQL {pg}{suffix}", f"Redis {rv}{suffix}"


def _field(path: str, key: str, sep: str) -> str | None:
    """The value of the first line of `path` that starts with `key` (None: no such line)."""
    file = Path(path)
    lines = file.read_text().splitlines() if file.exists() else []
    found = (ln.split(sep, 1)[1].strip().strip('"') for ln in lines if ln.startswith(key))
    return next(found, None)


def record_machine() -> None:
    pg, redis = asyncio.run(service_versions())
    mem_kb = int((_field("/proc/meminfo", "MemTotal:", ":") or "0").split()[0])
    os_name = _field("/etc/os-release", "PRETTY_NAME=", "=") or platform.system()
    info = {
        "cpu": _field("/proc/cpuinfo", "model name", ":") or "unknown CPU",
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": f"{mem_kb / 1024**2:.0f} GiB",
        "os": f"{os_name}, Linux {platform.release()}",
        "python": f"Python {platform.python_version()}",
        "postgres": pg,
        "redis": redis,
    }
    FIGURES.mkdir(parents=True, exist_ok=True)
    MACHINE.write_text(json.dumps(info, indent=2) + "\n")
