"""A DATABASE_URL naming a database without the host's tables (issue: a wrong URL grew a
stand-in host there, and check-host then passed): every process and command stops with one line
naming the database and a missing table, and leaves the database exactly as it was."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from pmd_service.core.migrate import database_label
from support.stack import free_port
from tests.helpers import CHECKOUT, SECRET

COMMANDS = [
    ["serve"],
    ["migrate"],
    ["stats"],
    ["sweep"],
    ["cleanup"],
    ["check-restore"],
    ["requeue", str(uuid.UUID(int=7))],
    ["token", "someone"],
    ["check-host"],
    ["import-host-bdrs"],
    ["import-host-bdrs", "--apply"],
]


def _run(
    argv: list[str], url: str, redis_url: str, tmp_path: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = (
        os.environ
        | extra
        | {
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "JWT_SECRET_KEY": SECRET,
            "PORT": str(free_port()),
            "METRICS_PORT": "0",
            "PMD_DATA_DIR": str(tmp_path),
            "VAULT_PATH": str(tmp_path / "vault"),
            "ZIP_PATH": str(tmp_path / "bdr"),
        }
    )
    return subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=CHECKOUT,
        stdin=subprocess.DEVNULL,
    )


def _assert_one_line(done: subprocess.CompletedProcess[str], url: str) -> None:
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if "has no host table" in line]
    assert len(lines) == 1, done.stderr
    assert f"database {database_label(url)} has no host table public.audit_logs" in lines[0]
    assert database_label(url).endswith("/" + urlsplit(url).path.lstrip("/"))
    assert "postgres@" not in lines[0]


async def _untouched(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        assert (
            await conn.fetch(
                "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
            )
            == []
        )
        assert await conn.fetchval("SELECT to_regnamespace('pmd')") is None
    finally:
        await conn.close()


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
async def test_every_command_stops_with_one_line(
    argv: list[str], empty_db: str, redis_url: str, tmp_path: Path
) -> None:
    url = empty_db  # a superuser's (each test's): the worst case, it may create anything
    done = _run([sys.executable, "-m", "pmd_service", *argv], url, redis_url, tmp_path)
    _assert_one_line(done, url)
    await _untouched(url)


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_the_server_stops_with_one_line_and_status_2(
    empty_db: str, redis_url: str, tmp_path: Path, processes: str
) -> None:
    """With SERVER_PROCESSES>1 as with one: the setup problem is found once, before the
    processes start, and is exit status 2."""
    url = empty_db
    done = _run([sys.executable, "server.py"], url, redis_url, tmp_path, SERVER_PROCESSES=processes)
    _assert_one_line(done, url)
    assert done.returncode == 2, done.stderr
    await _untouched(url)


async def test_the_worker_stops_with_one_line(
    empty_db: str, redis_url: str, tmp_path: Path
) -> None:
    url = empty_db
    arq = str(Path(sys.executable).with_name("arq"))
    done = _run([arq, "pmd_service.worker_settings.WorkerSettings"], url, redis_url, tmp_path)
    _assert_one_line(done, url)
    await _untouched(url)


async def test_the_development_form_creates_them(
    empty_db: str, redis_url: str, tmp_path: Path
) -> None:
    url = empty_db
    argv = [sys.executable, "-m", "pmd_service", "migrate", "--with-host-tables"]
    done = _run(argv, url, redis_url, tmp_path)
    assert done.returncode == 0, done
    assert "standalone host tables" in done.stdout
    # check-host refuses them, unless told this is a dev database.
    check = [sys.executable, "-m", "pmd_service", "check-host"]
    done = _run(check, url, redis_url, tmp_path)
    assert done.returncode == 1, done
    [refusal] = [line for line in done.stdout.splitlines() if line.startswith("NOT THE HOST'S")]
    assert "audit_logs, comments, licenses, post_files, posts, reactions, users" in refusal
    assert "stand-ins the service created" in refusal
    done = _run([*check, "--dev-database"], url, redis_url, tmp_path)
    assert done.returncode == 0, done
    assert "NOT THE HOST'S" not in done.stdout
