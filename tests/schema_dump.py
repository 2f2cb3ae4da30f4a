"""`pg_dump` for the tests that compare a schema before and after the service touched it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def pg_dump() -> str:
    """A pg_dump at least as new as the server: the embedded PostgreSQL's, else the PATH's."""
    try:
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("pg_dump")
    if found is None:
        pytest.skip("no pg_dump on this machine")
    return found


def dump_host_schema(url: str) -> str:
    done = subprocess.run(
        [pg_dump(), "--schema-only", "--schema=public", "--no-owner", "--no-privileges", url],
        capture_output=True, text=True, check=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.stdout
