"""Debian's PgBouncer in transaction mode in front of a test database: for tests/test_pgbouncer.py
(a small pool, its log read) and for the whole suite with TEST_DATABASE_POOLER=pgbouncer (every
server, worker, CLI and in-process app then reaches its pooled connections through it)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import asyncpg

from tests.helpers import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def installed() -> bool:
    return Path(PGBOUNCER).exists()


@contextmanager
def running_pgbouncer(database_url: str, server_connections: int) -> Iterator[tuple[str, Path]]:
    """PgBouncer (transaction mode, `server_connections` per database and role) in front of
    `database_url`'s server; yields its URL for `database_url`'s role and database, and its log."""
    db = urlsplit(database_url)
    # A TCP server, or the embedded one's socket folder (`?host=/folder`).
    server_host = db.hostname or parse_qs(db.query)["host"][0]
    port = free_port()
    # Its own folder, readable by the unprivileged user PgBouncer runs as (it refuses root).
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    folder.chmod(0o777)
    user = db.username or "postgres"
    # With `trust` PgBouncer asks the client for no password and logs in to PostgreSQL with
    # the one written here.
    password = unquote(db.password or "").replace('"', '""')
    (folder / "userlist.txt").write_text(f'"{user}" "{password}"\n')
    log = folder / "pgbouncer.log"
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server_host} port={db.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {server_connections}\n"
        "max_client_conn = 2000\nreserve_pool_size = 0\n"
        f"logfile = {log}\nlog_connections = 1\n"
    )
    for path in folder.iterdir():
        path.chmod(0o666)
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        # The socket folder's owner can reach an embedded server's socket; a TCP one, anyone.
        owner = pwd.getpwuid(Path(server_host).stat().st_uid).pw_name if not db.hostname else ""
        runs_as = owner if owner and owner != "root" else "postgres"
        command[1:1] = ["-u", runs_as if _user_exists(runs_as) else "nobody"]
    # Its output into a file, never a pipe: a pipe nobody reads fills up with a long run's
    # log lines, and then PgBouncer blocks on its next one and answers no client.
    output = folder / "output.txt"
    with output.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = urlunsplit(db._replace(netloc=f"{user}@127.0.0.1:{port}", query=""))
    try:
        asyncio.run(_wait_for(url, proc, output))
        yield url, log
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


async def _wait_for(url: str, proc: subprocess.Popen[bytes], output: Path) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            text = await asyncio.to_thread(output.read_text, errors="replace")
            raise AssertionError(f"pgbouncer exited: {text}")
        try:
            conn = await asyncpg.connect(url, statement_cache_size=0, timeout=2)
        except (OSError, TimeoutError, asyncpg.PostgresError):
            await asyncio.sleep(0.05)
            continue
        await conn.close()
        return
    raise AssertionError("pgbouncer did not answer")
