"""One way to start a stack for the tests, benchmarks and runs: databases, processes, env."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

from pmd_service.core.db import connect
from pmd_service.core.migrate import MIGRATIONS, apply_migrations
from pmd_service.core.settings import Settings
from pmd_service.dev.embedded import services, stop_processes
from pmd_service.sse.hub import LISTENER_NAME

CHECKOUT = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, "server.py"]
WORKER = [sys.executable, "-m", "pmd_service", "worker"]


def bench_settings() -> Settings:
    """DATABASE_URL and REDIS_URL from the environment, else the embedded servers."""
    env = {
        "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "PMD_DATA_DIR": str(CHECKOUT / ".data" / "bench"),
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
    }
    return Settings.from_env(env, embedded=services)


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (pgserver URLs carry the host in the query)."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@asynccontextmanager
async def connected(
    url: str, application_name: str | None = None, **options: Any
) -> AsyncIterator[asyncpg.Connection]:
    """A connection to `url` (as the service makes one, given its name), closed after."""
    if application_name is None:
        conn = await asyncpg.connect(url, **options)
    else:
        conn = await connect(url, application_name, **options)
    try:
        yield conn
    finally:
        await conn.close()


async def create_database(server_url: str, name: str, *, search_path: bool = True) -> str:
    async with connected(server_url) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
        if search_path:
            await admin.execute(f'ALTER DATABASE "{name}" SET search_path = pmd, public')
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str, *roles: str) -> None:
    async with connected(server_url) as admin:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in roles:
            await admin.execute(f"DROP ROLE IF EXISTS {role}")


@asynccontextmanager
async def fresh_stack() -> AsyncIterator[Settings]:
    base = await asyncio.to_thread(bench_settings)  # pgserver's start-up blocks
    name = f"pmd_bench_{uuid.uuid4().hex[:10]}"
    url = await create_database(base.database_url, name)
    try:
        with tempfile.TemporaryDirectory(prefix="pmd-bench-") as tmp:
            settings = msgspec.structs.replace(
                base,
                database_url=url,
                vault_path=Path(tmp) / "vault",
                zip_path=Path(tmp) / "bdr",
                auto_migrate=False,
            )
            async with connected(settings.database_url, "pmd-bench") as conn:
                await apply_migrations(conn, MIGRATIONS, with_host_tables=True)  # dev: stand-ins
            yield settings
    finally:
        await drop_database(base.database_url, name)


def _bindable(port: int) -> bool:
    with socket.socket() as s, contextlib.suppress(OSError):
        s.bind(("", port))
        return True
    return False


_CLAIMS = Path(tempfile.gettempdir()) / "pmd-service-ports"
_HELD: list[int] = []  # the claims' descriptors: a claim lasts as long as its process


def _claimed(port: int) -> bool:
    """Whether this process now holds `port`'s lock file, which no other process can take."""
    _CLAIMS.mkdir(exist_ok=True)
    fd = os.open(_CLAIMS / str(port), os.O_CREAT | os.O_RDWR)
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _HELD.append(fd)
        return True
    os.close(fd)
    return False


# Chromium's kRestrictedPorts (net::ERR_UNSAFE_PORT): a browser test may be sent to any port drawn.
BROWSER_REFUSED_PORTS = frozenset(
    {
        0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95,
        101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161,
        179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563,
        587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 5060, 5061,
        6000, 6566, 6665, 6666, 6667, 6668, 6669, 6697, 10080,
    }
)  # fmt: skip


def free_port(gap: int = 0) -> int:
    """A free port (and the one `gap` above) below the ephemeral range, neither browser-refused;
    claimed for this process's life, as a port found free is bound only later and other test
    processes (xdist workers, CI's other lane) draw at the same time."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768  # Linux's default
    for _ in range(200):
        port = random.randrange(10000, ephemeral - gap)
        pair = {port, port + gap}
        refused = not BROWSER_REFUSED_PORTS.isdisjoint(pair)
        if not refused and all(map(_claimed, pair)) and all(map(_bindable, pair)):
            return port
    raise RuntimeError(f"no free ports {gap} apart below {ephemeral}")


def database_env(settings: Settings) -> dict[str, str]:
    """DATABASE_URL, and with a pooler in front DATABASE_DIRECT_URL and DATABASE_POOLER."""
    env = {"DATABASE_URL": settings.database_url, "DATABASE_POOLER": settings.database_pooler}
    if settings.database_direct_url:
        env["DATABASE_DIRECT_URL"] = settings.database_direct_url
    return env


def service_env(
    settings: Settings, data_dir: Path | None = None, /, **extra: str
) -> dict[str, str]:
    """The environment of a service process on `settings`; with `data_dir`, a test's."""
    if data_dir is None:
        env = {**os.environ, "LOG_FORMAT": "text"}
    else:
        own = ("PMD_", "LOG_", "METRICS_", "STARTUP_")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(own) and k not in ("PORT", "HOST")
        }
        env |= {"HOST": "127.0.0.1", "PMD_DATA_DIR": str(data_dir)}
    return env | {
        **database_env(settings),
        "REDIS_URL": settings.redis_url,
        "JWT_SECRET_KEY": settings.jwt_secret_key,
        "VAULT_PATH": str(settings.vault_path),
        "ZIP_PATH": str(settings.zip_path),
        "AUTO_MIGRATE": "false",
        "METRICS_PORT": "0",  # a dev worker may hold the default port
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def log_tail(log: Path | None, chars: int = 2000) -> str:
    try:
        text = log.read_text(errors="replace").strip() if log is not None else ""
    except OSError:
        return ""
    return f"; its log ends:\n{text[-chars:]}" if text else ""


def wait_ready(
    proc: subprocess.Popen[bytes] | None,
    ready: Callable[[], bool],
    what: str,
    log: Path | None = None,
    within: float = 30,
    error: type[Exception] = RuntimeError,
) -> None:
    """Until `ready()`; `error` with `log`'s end if `proc` exits first or `within` s pass."""
    deadline = time.monotonic() + within
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise error(f"{what} exited with {proc.returncode} at start{log_tail(log)}")
        if time.monotonic() > deadline:
            if proc is not None:
                proc.kill()
            raise error(f"{what} did not answer within {within:.0f} s{log_tail(log)}")
        time.sleep(0.1)


async def eventually(
    check: Callable[[], Awaitable[bool]],
    within: float = 10,
    what: str | Callable[[], str] = "the condition",
    interval: float = 0.01,
) -> None:
    """Poll `check` until true, failing after `within` seconds with `what` (or what it returns)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within} s: {what() if callable(what) else what}")
        await asyncio.sleep(interval)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - our own servers
            return bool(r.status == 200)
    except OSError:
        return False


def start_server(
    env: dict[str, str], port: int, log: IO[bytes] | None = None, argv: list[str] = SERVER
) -> subprocess.Popen[bytes]:
    """`python server.py` (or `argv`), once /readyz answers 200; its output to `log`."""
    proc = subprocess.Popen(
        argv, cwd=CHECKOUT, env={**env, "PORT": str(port)}, stdout=log, stderr=log
    )
    name = getattr(log, "name", None)
    url, path = f"http://127.0.0.1:{port}/readyz", Path(name) if isinstance(name, str) else None
    wait_ready(proc, lambda: answers(url), f"server.py on port {port}", path)
    return proc


def start_worker(env: dict[str, str], argv: list[str] = WORKER) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, cwd=CHECKOUT, env=env, stderr=subprocess.DEVNULL)


def stop(*procs: subprocess.Popen[bytes]) -> None:
    stop_processes(procs, 10)


async def listener_pids(conn: asyncpg.Connection | asyncpg.Pool) -> list[int]:
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
        " AND datname = current_database()",
        LISTENER_NAME,
    )
    return [r["pid"] for r in rows]
