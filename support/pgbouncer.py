"""Debian's PgBouncer in transaction mode in front of PostgreSQL: for the tests and the runs."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import asyncpg

from pmd_service.dev.embedded import stop_processes
from support import tools
from support.stack import connected, free_port, wait_ready


def config(
    *,
    server: tuple[str, int],
    listen: tuple[str, int],
    folder: Path,
    pool_size: int,
    max_client_conn: int,
    logfile: Path | None = None,
    admin: str = "",
) -> str:
    """pgbouncer.ini: every database of `server` behind `listen`; `folder` holds userlist.txt."""
    return (
        "[databases]\n"
        f"* = host={server[0]} port={server[1]}\n"
        "[pgbouncer]\n"
        f"listen_addr = {listen[0]}\nlisten_port = {listen[1]}\nunix_socket_dir =\n"
        # `trust`: no password asked of clients; PostgreSQL gets userlist.txt's.
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nreserve_pool_size = 0\n"
        f"max_client_conn = {max_client_conn}\n"
        # What drivers other than asyncpg send at connection start (psql, psycopg).
        "ignore_startup_parameters = extra_float_digits,application_name\n"
        f"admin_users = {admin}\n"
        f"logfile = {logfile or ''}\npidfile =\nlog_connections = 1\n"
    )


def userlist(users: dict[str, str]) -> str:
    return "".join(f'"{user}" "{pw.replace(chr(34), chr(34) * 2)}"\n' for user, pw in users.items())


@dataclass(frozen=True)
class PgBouncer:
    url: str  # the database's URL with PgBouncer in place of its server
    log: Path
    console: str  # its admin console (database `pgbouncer`): PAUSE, RESUME, RECONNECT


def _runs_as(server_host: str, tcp: bool) -> str:
    """Who PgBouncer runs as under root, which it refuses: the socket folder's owner, or postgres."""
    owner = "" if tcp else pwd.getpwuid(Path(server_host).stat().st_uid).pw_name
    name = owner if owner and owner != "root" else "postgres"
    try:
        return pwd.getpwnam(name).pw_name
    except KeyError:
        return "nobody"


@contextmanager
def running_pgbouncer(database_url: str, server_connections: int) -> Iterator[PgBouncer]:
    binary = tools.find("pgbouncer")
    if binary is None:
        raise RuntimeError(tools.missing(["pgbouncer"]))
    db = urlsplit(database_url)
    server_host = db.hostname or parse_qs(db.query)["host"][0]  # or a socket folder
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    folder.chmod(0o777)  # readable by the user PgBouncer runs as
    user = db.username or "postgres"
    (folder / "userlist.txt").write_text(userlist({user: unquote(db.password or "")}))
    log = folder / "pgbouncer.log"
    (folder / "pgbouncer.ini").write_text(
        config(
            server=(server_host, db.port or 5432),
            listen=("127.0.0.1", port),
            folder=folder,
            pool_size=server_connections,
            max_client_conn=2000,
            logfile=log,
            admin=user,
        )
    )
    for path in folder.iterdir():
        path.chmod(0o666)
    command = [binary, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", _runs_as(server_host, bool(db.hostname))]
    # Into a file, never a pipe: a pipe nobody reads fills up in a long run and blocks it.
    output = folder / "output.txt"
    with output.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    at = f"{user}@127.0.0.1:{port}"
    url = urlunsplit(db._replace(netloc=at, query=""))
    try:
        wait_ready(proc, lambda: asyncio.run(_answers(url)), "pgbouncer", output, within=20)
        yield PgBouncer(url, log, urlunsplit(db._replace(netloc=at, path="/pgbouncer", query="")))
    finally:
        stop_processes([proc], 10)
        shutil.rmtree(folder, ignore_errors=True)


async def console(bouncer: PgBouncer, command: str, within: float) -> None:
    """One command on the admin console; PAUSE returns once every server connection is free."""
    # The console speaks only the simple query protocol: `execute` without arguments uses it.
    async with connected(bouncer.console, statement_cache_size=0, timeout=5) as conn:
        await conn.execute(command, timeout=within)


async def _answers(url: str) -> bool:
    try:
        async with connected(url, statement_cache_size=0, timeout=2):
            return True
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return False
