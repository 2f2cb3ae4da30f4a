"""The runs' processes, their unasked exits found and supervised; the chaos run's tmpfs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from pmd_service.dev.embedded import stop_processes
from support.stack import CHECKOUT, SERVER, WORKER, answers, free_port, wait_ready

Spans = list[tuple[float, float]]


def during(spans: Spans, t: float, grace: float) -> bool:
    return any(a - grace <= t <= b + grace for a, b in spans)


def covered(spans: Spans, start: float, end: float) -> float:
    """The seconds of [start, end] inside at least one of `spans`."""
    total, reached = 0.0, start
    for a, b in sorted(spans):
        a, b = max(a, reached), min(b, end)
        if b > a:
            total, reached = total + b - a, b
    return total


@contextlib.contextmanager
def window(spans: Spans) -> Iterator[float]:
    """A span in `spans` from now to the block's end; yields its start."""
    start, n = time.monotonic(), len(spans)
    spans.append((start, start + 3600))
    try:
        yield start
    finally:
        spans[n] = (start, time.monotonic())


def open_files(pid: int) -> list[str]:
    out = []
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                out.append(os.readlink(fd))
    return out


@dataclass
class Processes:
    name: str
    _: KW_ONLY
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)  # running
    started: int = 0
    stopping: set[int] = field(default_factory=set)  # pids stopped on purpose
    unexpected: list[Exited] = field(default_factory=list)
    outputs: dict[int, tuple[Path, int]] = field(default_factory=dict)
    # A lost host is killed on a thread while the supervisor reaps on the event loop.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def command(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def marked(self, env: Mapping[str, str] | None) -> dict[str, str]:
        return dict(os.environ if env is None else env)

    def spawn(
        self,
        argv: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in its own session: it can be killed whole; Ctrl-C reaches the run."""
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        with open(log, "ab") as out:
            offset = out.tell()
            proc = subprocess.Popen(
                self.command(argv),
                cwd=CHECKOUT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.marked(env),
                start_new_session=True,
            )
        self.procs.append(proc)
        self.started += 1
        self.outputs[proc.pid] = (log, offset)
        return proc

    def reap(self) -> list[Exited]:
        found = []
        with self._lock:
            for proc in [p for p in self.procs if p.poll() is not None]:
                self.procs.remove(proc)
                if proc.pid in self.stopping:
                    continue
                log, offset = self.outputs.get(proc.pid, (Path(os.devnull), 0))
                end = log.stat().st_size if log.exists() else offset
                argv = [str(a) for a in proc.args] if isinstance(proc.args, list) else []
                found.append(
                    Exited(self.name, _program(argv), proc.pid, proc.returncode, log, offset, end)
                )
            self.unexpected += found
        return found

    def kill_all(self) -> None:
        """A power cut: SIGKILL every process group started here."""
        for proc in list(self.procs):
            if proc.poll() is None:
                self.stopping.add(proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.reap()

    async def sigterm(self, spans: Spans, within: float) -> tuple[int | None, float]:
        """SIGTERM to the last process started: its exit code (None: SIGKILLed) and seconds."""
        proc = self.procs[-1]
        self.stopping.add(proc.pid)
        with window(spans) as start:
            proc.send_signal(signal.SIGTERM)
            try:
                code: int | None = await asyncio.to_thread(proc.wait, within)
            except subprocess.TimeoutExpired:
                await asyncio.to_thread(self.kill_all)
                code = None
        return code, time.monotonic() - start


@dataclass(frozen=True)
class Exited:
    host: str
    program: str
    pid: int
    code: int  # negative: the signal that killed it
    log: Path
    offset: int  # where its output begins in `log`
    end: int  # and where it had ended when found (a restart appends after it)

    def output(self) -> str:
        try:
            with self.log.open("rb") as f:
                f.seek(self.offset)
                return f.read(max(0, self.end - self.offset)).decode(errors="replace")
        except OSError:
            return ""

    def describe(self) -> str:
        if self.code < 0 and -self.code in signal.valid_signals():
            how = f"killed by {signal.Signals(-self.code).name}"
        else:
            how = f"exit code {self.code}"
        lines = [line for line in self.output().splitlines() if line.strip()]
        last = f"; its last line: {lines[-1][:200]}" if lines else ""
        return f"{self.host}: {self.program} (pid {self.pid}) ended unasked: {how}{last}"


def _program(argv: list[str]) -> str:
    if "--" in argv:
        argv = argv[len(argv) - argv[::-1].index("--") :]
    return shlex.join(Path(a).name if a.startswith("/") else a for a in argv[:4])


@dataclass
class Supervisor:
    """Says which processes exited unasked, and starts those of the names `restarts` again."""

    groups: Mapping[str, Processes]
    restart: Callable[[str], Awaitable[None]]
    restarts: tuple[str, ...]  # the prefixes of the names started again
    say: Callable[[str], None] = print

    async def watch(self, every: float = 0.5) -> None:
        while True:
            for exited in [e for group in self.groups.values() for e in group.reap()]:
                restart = exited.host.startswith(self.restarts)
                self.say(f"{exited.describe()}{'; started again' if restart else ''}")
                if restart and not self.groups[exited.host].procs:
                    await self.restart(exited.host)
            await asyncio.sleep(every)


@dataclass
class Proc(Processes):
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
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
        return self.procs[-1].pid

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def start(self) -> None:
        self.spawn(self.argv, self.log, self.env)

    async def wait_healthy(self) -> None:
        if self.port is not None:
            healthy = functools.partial(answers, self.base + "/healthz")
            await asyncio.to_thread(wait_ready, self.procs[-1], healthy, self.name, self.log, 60)

    def in_shutdown(self, t: float, grace: float = 1.0) -> bool:
        return during(self.shutdowns, t, grace)

    def stop(self) -> None:
        stop_processes(self.procs, 25)


class Tmpfs:
    """A small tmpfs over the BDR folder (root only), filled by a ballast file."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path, self.size_mb, self.mounted = path, size_mb, False
        self.ballast = path / ".chaos-ballast"

    @staticmethod
    def possible() -> bool:
        return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        options = f"size={self.size_mb}m,mode=0755"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", self.path], check=True)
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted and subprocess.run(["umount", self.path], capture_output=True).returncode:
            # Something still holds a file open there: detach it anyway.
            subprocess.run(["umount", "-l", self.path], check=False)
        self.mounted = False

    def fill(self) -> int:
        free = shutil.disk_usage(self.path).free
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with contextlib.suppress(OSError):
                os.posix_fallocate(fd, 0, free)
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
