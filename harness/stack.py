"""What the benchmarks share: a fresh database on real servers, and the service's processes.

PostgreSQL and Redis: DATABASE_URL / REDIS_URL when set, otherwise embedded ones started the
way the app starts them (under .data/bench). Each run works in a database it creates and drops.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

from pmd_service.core.db import connect
from pmd_service.core.migrate import apply_migrations
from pmd_service.core.settings import Settings
from pmd_service.dev.embedded import services

# The checkout: the benchmarks run server.py and worker.py from it and write under .data.
CHECKOUT = Path(__file__).resolve().parent.parent


def bench_settings() -> Settings:
    """DATABASE_URL and REDIS_URL from the environment, else the embedded servers under
    .data/bench (started or joined); a throwaway token secret."""
    env = {
        "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "PMD_DATA_DIR": str(CHECKOUT / ".data" / "bench"),
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
    }
    return Settings.from_env(env, embedded=services)


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@asynccontextmanager
async def fresh_stack() -> AsyncIterator[Settings]:
    """Settings pointing at a new, migrated database, Redis, and a temp vault."""
    # pgserver's start-up blocks; keep it off the event loop.
    base = await asyncio.to_thread(bench_settings)
    name = f"pmd_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(base.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        # The bench's own connections name the service's tables unqualified, as the service does.
        await admin.execute(f'ALTER DATABASE "{name}" SET search_path = pmd, public')
    finally:
        await admin.close()
    try:
        with tempfile.TemporaryDirectory(prefix="pmd-bench-") as tmp:
            settings = msgspec.structs.replace(
                base,
                database_url=with_database(base.database_url, name),
                vault_path=Path(tmp) / "vault",
                bdr_path=Path(tmp) / "bdr",
                jwt_secret_key=secrets.token_urlsafe(48),
                auto_migrate=False,
            )
            conn = await connect(settings.database_url, "pmd-bench")
            try:
                await apply_migrations(conn, with_host_tables=True)  # a dev database: stand-ins
            finally:
                await conn.close()
            yield settings
    finally:
        admin = await asyncpg.connect(base.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def database_env(settings: Settings) -> dict[str, str]:
    """The database part of a process's environment: DATABASE_URL, and with a pooler in front
    DATABASE_DIRECT_URL (LISTEN, migrations) and DATABASE_POOLER."""
    env = {"DATABASE_URL": settings.database_url, "DATABASE_POOLER": settings.database_pooler}
    if settings.database_direct_url:
        env["DATABASE_DIRECT_URL"] = settings.database_direct_url
    return env


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **database_env(settings),
        "REDIS_URL": settings.redis_url,
        "JWT_SECRET_KEY": settings.jwt_secret_key,
        "VAULT_PATH": str(settings.vault_path),
        "BDR_PATH": str(settings.bdr_path),
        "AUTO_MIGRATE": "false",
        "LOG_FORMAT": "text",
        "METRICS_PORT": "0",  # a dev worker may hold the default port
        **extra,
    }


def start_server(
    env: dict[str, str], port: int, log: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """`python server.py` as production runs it; returns once /readyz answers 200. `log`: where
    its log goes instead of this process's stderr (a line per request drowns a bench's figures)."""
    proc = subprocess.Popen(
        [sys.executable, "server.py"], cwd=CHECKOUT, env={**env, "PORT": str(port)}, stderr=log
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not become ready")


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`python -m pmd_service worker` as production runs it."""
    return subprocess.Popen([sys.executable, "-m", "pmd_service", "worker"], cwd=CHECKOUT,
                            env=env, stderr=subprocess.DEVNULL)  # fmt: skip


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
