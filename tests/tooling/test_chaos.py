"""The chaos run's CI variant (`python -m runs.chaos --ci`), only when PMD_CHAOS=1.

It starts its own Redis, SMTP server, two servers and two workers, runs for about two minutes
and mounts a tmpfs when root: too heavy for every `make test`, so CI opts in. With
TEST_DATABASE_POOLER=pgbouncer, as the rest of the suite, the folder run's servers and workers
go through PgBouncer in transaction mode (`--pooler pgbouncer`: a PgBouncer of its own, paused
once); the bucket run connects directly either way.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers import run_python

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("PMD_CHAOS") != "1",
        reason="the chaos run takes minutes and starts its own servers; set PMD_CHAOS=1 to run it",
    ),
    # The chaos and cluster runs, one at a time on one xdist worker: each loads the machine.
    pytest.mark.xdist_group("runs"),
]
POOLER = ["--pooler", os.environ.get("TEST_DATABASE_POOLER", "none")]


def chaos(*args: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], str]:
    """`python -m runs.chaos ARGS` from the checkout: its result and its whole output."""
    result = run_python("-m", "runs.chaos", *args, timeout=timeout)
    return result, result.stdout + result.stderr


# Minutes of injected faults: its own limit, the subprocess's, instead of the suite's 300 s.
# Twice: ZIPs in the BDR folder (with a full disk when root), and in a bucket of a real S3
# server (SeaweedFS stopped for 20 s, workers SIGKILLed mid-upload).
@pytest.mark.timeout(960)
@pytest.mark.parametrize("where", ["--ci", "--store"], ids=["folder", "bucket"])
def test_chaos_ci_run_finds_no_violation(where: str) -> None:
    # The bucket's run stays direct: a CI pass through PgBouncer still has one chaos run of
    # each deployment.
    pooler = POOLER if where == "--ci" else ["--pooler", "none"]
    result, output = chaos("--ci", *([where] if where != "--ci" else []), *pooler, timeout=900)
    assert result.returncode == 0, output[-6000:]
    assert "chaos: OK: 0 violations" in result.stdout, output[-6000:]


# A tiny run (two users, 25 s, no faults) whose harness flips a byte of every body it downloads
# before checking it: the run's own download checks must fail it, and nothing else may.
@pytest.mark.timeout(420)
def test_chaos_run_fails_when_every_download_is_corrupt() -> None:
    result, output = chaos(
        "--users", "2", "--duration", "25", "--no-faults", "--break-downloads", *POOLER, timeout=400
    )
    assert result.returncode == 1, output[-6000:]
    assert "chaos: FAILED:" in result.stdout, output[-6000:]
    violations = [
        v.strip() for v in result.stdout.splitlines() if v.strip().startswith("VIOLATION")
    ]
    assert violations, output[-6000:]
    # Only the downloads failed (the report's own line for them, and each failed download).
    unrelated = [v for v in violations if "download" not in v]
    assert unrelated == [], output[-6000:]
