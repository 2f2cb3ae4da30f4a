"""The embedded PostgreSQL started by many processes at once from an empty folder, as the
suite's eight pytest-xdist workers start it on a fresh clone's first `make test`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
WORKERS = 8

# Each process imports first and says so, then waits for the go file, so that all ask for the
# server within a millisecond or so of each other.
_START = """
import sys, time, warnings
from pathlib import Path
from pmd_service.dev.embedded import start_postgres
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pgserver
go = Path(sys.argv[2])
Path(sys.argv[3]).touch()
while not go.exists():
    time.sleep(0.0005)
print(start_postgres(Path(sys.argv[1])), flush=True)
sys.stdin.read()  # held until every process has it, as the suite's workers hold it
"""


@pytest.mark.parametrize("round_", range(3))
def test_workers_starting_at_once_from_an_empty_folder_all_get_the_server(
    tmp_path: Path, request: pytest.FixtureRequest, round_: int
) -> None:
    # Beside the suite's own server, where the pgserver user (as root) can reach it.
    data = CHECKOUT / ".data" / f"start-{uuid.uuid4().hex[:8]}"
    request.addfinalizer(lambda: shutil.rmtree(data, ignore_errors=True))
    pgdata, go = data / "test-pg", tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONWARNINGS")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _START, str(pgdata), str(go), str(tmp_path / f"ready-{n}")],
            cwd=CHECKOUT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WORKERS)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    # Every process reads its URL (or fails) before any lets go of the server.
    urls = [proc.stdout.readline().strip() for proc in procs if proc.stdout is not None]
    results = [proc.communicate("", timeout=240) for proc in procs]
    failed = [err for proc, (_, err) in zip(procs, results, strict=True) if proc.returncode != 0]
    assert not failed, failed[0]
    assert len(set(urls)) == 1 and urls[0].startswith("postgresql://"), urls


_ONCE = """
import sys
from pathlib import Path
from pmd_service.dev.embedded import EmbeddedError, start_postgres
try:
    print(start_postgres(Path(sys.argv[1])), flush=True)
except EmbeddedError as exc:
    sys.exit(str(exc))
"""


def _start_once(pgdata: Path) -> subprocess.CompletedProcess[str]:
    """One process starts the server and exits, stopping it: as `make run` and Ctrl-C."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONWARNINGS")}
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _ONCE, str(pgdata)],
        cwd=CHECKOUT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def pgdata() -> Iterator[Path]:
    data = CHECKOUT / ".data" / f"again-{uuid.uuid4().hex[:8]}"
    yield data / "test-pg"
    shutil.rmtree(data, ignore_errors=True)


def test_a_server_that_will_not_start_is_one_line_with_its_log_s_reason(pgdata: Path) -> None:
    first = _start_once(pgdata)
    assert first.returncode == 0, first.stderr[-3000:]
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write("\nshared_buffers = 'plenty'\n")
    again = _start_once(pgdata)
    said = again.stderr.strip().splitlines()[-1]
    assert again.returncode == 1, again.stderr[-3000:]
    assert said.startswith(f"the embedded PostgreSQL in {pgdata} would not start: "), said
    assert "shared_buffers" in said and str(pgdata / "log") in said, said
