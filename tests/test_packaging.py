"""The package stands on its own: what the Docker image installs, and what importing the
worker does (nothing but read the environment)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from pmd_service.core.migrate import discover
from tests.helpers import CHECKOUT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_lock_pins_every_runtime_dependency() -> None:
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
    lock = (CHECKOUT / "requirements.lock").read_text().splitlines()
    pinned = {_name(line): line for line in lock if line and not line.startswith("#")}
    assert all("==" in line for line in pinned.values())
    assert {_name(d) for d in project["dependencies"]} <= pinned.keys()


def test_migrations_are_read_from_the_package() -> None:
    assert [m.version for m in discover()] == sorted({m.version for m in discover()})
    assert discover()[0].version == 1


def test_importing_the_worker_starts_nothing(tmp_path: Path) -> None:
    """Without DATABASE_URL/REDIS_URL the worker module stops with one line (exit 2) naming
    exactly what is missing; it never starts the embedded servers and writes nothing (not even
    the dev secret), whatever the data dir."""
    base = {"PATH": "/usr/bin:/bin", "PMD_DATA_DIR": str(tmp_path / "data"), "PMD_DEV": "true"}
    for given, missing in [
        ({}, "DATABASE_URL and REDIS_URL are required"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "DATABASE_URL is required"),
        ({"DATABASE_URL": "postgresql://127.0.0.1:1/x"}, "REDIS_URL is required"),
    ]:
        done = subprocess.run(
            [sys.executable, "-c", "import pmd_service.jobs.worker"],
            env=base | given, capture_output=True, text=True, timeout=60, check=False,
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].endswith(f"pmd-worker: configuration error: {missing} and not set.")
        assert list(tmp_path.iterdir()) == []
