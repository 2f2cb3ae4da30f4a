"""The cluster's runs (harness/cluster.py), only when PMD_CHAOS=1: simulated hosts in network
namespaces need root. The two CI runs (with faults, and as a rolling deploy) take about two
minutes each; a short run whose worker host is killed behind its back must fail; and a run
stopped after any step of its start, by an error, Ctrl-C or SIGTERM, must leave nothing behind
(a few seconds each)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster_hosts import STEPS
from harness.netns import possible
from tests.helpers import CHECKOUT

pytestmark = pytest.mark.skipif(
    os.environ.get("PMD_CHAOS") != "1",
    reason="the cluster runs take minutes and need root; set PMD_CHAOS=1 to run them",
)
CLUSTER = [sys.executable, "-m", "harness.cluster"]
RUN = re.compile(r"^cluster run (pmd\d+) in (\S+)$", re.MULTILINE)


@pytest.fixture(autouse=True)
def _root() -> None:
    why = possible()
    assert why is None, f"CI runs as root on a machine that allows network namespaces: {why}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", [[], ["--rolling"]], ids=["faults", "rolling-deploy"])
def test_cluster_ci_run_finds_no_violation(mode: list[str]) -> None:
    result = subprocess.run(
        [*CLUSTER, "--ci", *mode], cwd=CHECKOUT, capture_output=True, text=True, timeout=840
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "cluster: OK: 0 violations" in result.stdout, output[-8000:]
    assert not _leftovers(output), output[-8000:]


# Two users for 25 s, no faults, and one worker host's process SIGKILLed as no fault of the
# run does: its other worker does the work, every other check holds, and the run fails.
@pytest.mark.timeout(420)
def test_cluster_run_fails_when_a_process_ends_unasked() -> None:
    result = subprocess.run(
        [*CLUSTER, "--users", "2", "--duration", "25", "--no-faults", "--break-crash-check"],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-6000:]
    assert "cluster: FAILED: 1 violations" in result.stdout, output[-6000:]
    (violation,) = [v.strip() for v in result.stdout.splitlines() if "VIOLATION" in v]
    assert re.search(
        r"process starts that ended only when the run stopped them .*: wrk1: "
        r"python\S* -m pmd_service worker \(pid \d+\) ended unasked: killed by SIGKILL",
        violation,
    ), output[-6000:]
    assert not _leftovers(output), output[-6000:]


FAILURES = [(step, "error") for step in STEPS] + [("hosts", "sigint"), ("servers", "sigterm")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("step", "how"), FAILURES, ids=[f"{s}-{h}" for s, h in FAILURES])
def test_a_run_stopped_after_any_step_leaves_nothing_behind(step: str, how: str) -> None:
    result = subprocess.run(
        [*CLUSTER, "--ci", "--fail-at", step, "--fail-with", how],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    output = result.stdout + result.stderr
    expected = {"error": 1, "sigint": 130, "sigterm": 143}[how]
    assert result.returncode == expected, output[-6000:]
    assert f"] {step}\n" in result.stdout, output[-6000:]  # it did get that far
    assert _leftovers(output) == [], output[-6000:]


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("number", "when"),
    [(signal.SIGINT, "] database\n"), (signal.SIGTERM, "workload: ")],
    ids=["ctrl-c-during-the-start", "sigterm-during-the-workload"],
)
def test_a_signal_from_outside_leaves_nothing_behind(number: int, when: str) -> None:
    proc = subprocess.Popen(
        [*CLUSTER, "--ci"], cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    output = ""
    try:
        deadline = time.monotonic() + 90
        while when not in output and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output += line
        assert when in output, output
        proc.send_signal(number)
        output += proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + number, output[-6000:]
    assert f"cluster: stopped by {signal.Signals(number).name}" in output, output[-6000:]
    assert _leftovers(output) == [], output[-6000:]


def _leftovers(output: str) -> list[str]:
    """What the run named in `output` left: namespaces, processes (by the tag in their
    environment or the run folder on their command line), mounts, its folder."""
    match = RUN.search(output)
    assert match is not None, output[-3000:]
    tag, folder = match[1], match[2]
    left = []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [f"namespace {line.split()[0]}" for line in listed.splitlines()
             if line.startswith(f"{tag}-")]  # fmt: skip
    mark = f"\0PMD_CLUSTER_RUN={tag}\0".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if mark in environ or folder in cmdline:
            left.append(f"process {entry.name}: {cmdline[:120]}")
    mounts = Path("/proc/self/mountinfo").read_text()
    left += [f"mount {line}" for line in mounts.splitlines() if folder in line]
    if Path(folder).exists():
        left.append(f"folder {folder}")
    return left
