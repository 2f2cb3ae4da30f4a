"""The cluster's CI runs (`python -m harness.cluster --ci`, with faults and as a rolling deploy),
only when PMD_CHAOS=1: simulated hosts in network namespaces need root, and each run takes about
two minutes (harness/cluster.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.netns import possible
from tests.helpers import CHECKOUT

pytestmark = pytest.mark.skipif(
    os.environ.get("PMD_CHAOS") != "1",
    reason="the cluster runs take minutes and need root; set PMD_CHAOS=1 to run them",
)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", [[], ["--rolling"]], ids=["faults", "rolling-deploy"])
def test_cluster_ci_run_finds_no_violation(mode: list[str]) -> None:
    why = possible()
    assert why is None, f"CI runs as root on a machine that allows network namespaces: {why}"
    result = subprocess.run(
        [sys.executable, "-m", "harness.cluster", "--ci", *mode],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "cluster: OK: 0 violations" in result.stdout, output[-8000:]
