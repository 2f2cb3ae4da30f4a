"""The chaos run's servers: its own Redis and SMTP (so it can stop and restart them), the
service's processes as production runs them, and the tmpfs the ZIPs are written to."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from support.stack import CHECKOUT, SERVER, WORKER, free_port

Spans = list[tuple[float, float]]


def during(spans: Spans, t: float, grace: float) -> bool:
    """Whether `t` falls in one of `spans` (a fault's windows), give or take `grace` s."""
    return any(a - grace <= t <= b + grace for a, b in spans)


@contextlib.contextmanager
def window(spans: Spans) -> Iterator[float]:
    """A window in `spans` from now until the block ends, open-ended meanwhile (an answer
    while it lasts is inside it); yields its start."""
    start, n = time.monotonic(), len(spans)
    spans.append((start, start + 3600))
    try:
        yield start
    finally:
        spans[n] = (start, time.monotonic())


@dataclass
class Proc:
    """One service process (`python server.py` or `python -m pmd_service worker`), restartable."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None  # servers only
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    # (signal time, exit time) of every SIGTERM: a 503 inside one is a shutting-down answer.
    shutdowns: list[tuple[float, float]] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start #{self.starts} at {time.time():.3f} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, cwd=CHECKOUT, env=self.env, stdout=out, stderr=out,
                start_new_session=True,  # Ctrl-C reaches only the chaos run, which stops us
            )  # fmt: skip

    async def wait_healthy(self) -> None:
        if self.port is not None:
            await until_ok(self.base + "/healthz", self)

    def in_shutdown(self, t: float, grace: float = 1.0) -> bool:
        return during(self.shutdowns, t, grace)

    async def sigterm(self) -> float:
        """SIGTERM and wait for the exit; returns seconds to exit."""
        assert self.proc is not None
        with window(self.shutdowns) as start:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = await asyncio.to_thread(self.proc.wait, 10)
        self.exit_codes.append(code)
        return time.monotonic() - start

    def sigkill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.exit_codes.append(self.proc.wait(10))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(25)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def open_parts(self) -> list[str]:
        """Names of `.part` files this process holds open: it is building those ZIPs now."""
        files = open_files(self.proc.pid) if self.proc is not None else []
        return [Path(f).name for f in files if f.endswith(".part")]


def open_files(pid: int) -> list[str]:
    """The paths process `pid` holds open."""
    out = []
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                out.append(os.readlink(fd))
    return out


async def until_ok(url: str, proc: Proc | None = None, within: float = 60) -> None:
    """Until `url` answers 200; an error at once if `proc`, which should answer, exits."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{proc.name} exited at start; see {proc.log}")
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {within:.0f} s")


def server_proc(name: str, env: dict[str, str], logs: Path) -> Proc:
    port = free_port()
    return Proc(name, SERVER, {**env, "PORT": str(port)}, logs / f"{name}.log", port)


def worker_proc(name: str, env: dict[str, str], logs: Path) -> Proc:
    return Proc(name, WORKER, env, logs / f"{name}.log")


class Tmpfs:
    """A small tmpfs over the BDR folder for the whole run (root only), so "disk full" can be
    made with a ballast file and undone, without hiding ZIPs that already exist."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        self.size_mb = size_mb
        self.mounted = False
        self.ballast = path / ".chaos-ballast"

    @staticmethod
    def possible() -> bool:
        return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0755", "tmpfs",
                        str(self.path)], check=True)  # fmt: skip
        self.mounted = True

    def unmount(self) -> None:
        if not self.mounted:
            return
        result = subprocess.run(["umount", str(self.path)], capture_output=True)
        if result.returncode != 0:  # something still holds a file open: detach it anyway
            subprocess.run(["umount", "-l", str(self.path)], check=False)
        self.mounted = False

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Take every free byte; returns how many."""
        free = self.free_bytes()
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with contextlib.suppress(OSError):
                os.posix_fallocate(fd, 0, free)
            # Whatever fallocate left (block rounding), take with plain writes until ENOSPC.
            os.lseek(fd, 0, os.SEEK_END)
            block = b"\0" * 65536
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, block)
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0")
        finally:
            os.close(fd)
        return free

    def empty(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.ballast.unlink()
