"""The chaos run's processes: the service's servers and workers as production runs them, the
tmpfs its ZIPs are written to, and the time spans of its faults."""

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

from pmd_service.dev.embedded import stop_processes
from support.stack import CHECKOUT, SERVER, WORKER, answers, free_port, wait_ready

Spans = list[tuple[float, float]]


def during(spans: Spans, t: float, grace: float) -> bool:
    """Whether `t` falls in one of `spans` (a fault's windows), give or take `grace` s."""
    return any(a - grace <= t <= b + grace for a, b in spans)


@contextlib.contextmanager
def window(spans: Spans) -> Iterator[float]:
    """A span in `spans` from now to the block's end (open-ended meanwhile); yields its start."""
    start, n = time.monotonic(), len(spans)
    spans.append((start, start + 3600))
    try:
        yield start
    finally:
        spans[n] = (start, time.monotonic())


def open_files(pid: int) -> list[str]:
    """The paths process `pid` holds open."""
    out = []
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                out.append(os.readlink(fd))
    return out


@dataclass
class Proc:
    """A server (`python server.py`, on `port`) or a worker, restartable."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    # (SIGTERM, exit) of every stop: a 503 inside one is a shutting-down answer.
    shutdowns: Spans = field(default_factory=list)

    @classmethod
    def service(cls, name: str, env: dict[str, str], logs: Path, server: bool) -> Proc:
        port = free_port() if server else None
        env = env | {"PORT": str(port)} if server else env
        return cls(name, SERVER if server else WORKER, env, logs / f"{name}.log", port)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start #{self.starts} at {time.time():.3f} =====\n".encode())
            out.flush()
            # Its own session: Ctrl-C reaches only the chaos run, which stops it.
            self.proc = subprocess.Popen(self.argv, cwd=CHECKOUT, env=self.env, stdout=out,
                                         stderr=out, start_new_session=True)  # fmt: skip

    async def wait_healthy(self) -> None:
        if self.port is not None:
            await asyncio.to_thread(wait_ready, self.proc, lambda: answers(self.base + "/healthz"),
                                    self.name, self.log, 60)  # fmt: skip

    def in_shutdown(self, t: float, grace: float = 1.0) -> bool:
        return during(self.shutdowns, t, grace)

    async def sigterm(self) -> tuple[int, float]:
        """SIGTERM and wait for the exit (SIGKILL after 20 s): its code, and seconds to it."""
        assert self.proc is not None
        with window(self.shutdowns) as start:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = await asyncio.to_thread(self.proc.wait, 10)
        return code, time.monotonic() - start

    def sigkill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        stop_processes([self.proc] if self.proc is not None else [], 25)


class Tmpfs:
    """A small tmpfs over the BDR folder (root only): "disk full" is a ballast file that takes
    every free byte, undone without hiding the ZIPs already there."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path, self.size_mb, self.mounted = path, size_mb, False
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
        if self.mounted and subprocess.run(["umount", self.path], capture_output=True).returncode:
            # Something still holds a file open there: detach it anyway.
            subprocess.run(["umount", "-l", self.path], check=False)
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
            # What fallocate left (block rounding): plain writes until ENOSPC.
            os.lseek(fd, 0, os.SEEK_END)
            for block in (b"\0" * 65536, b"\0"):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, block)
        finally:
            os.close(fd)
        return free

    def empty(self) -> None:
        self.ballast.unlink(missing_ok=True)
