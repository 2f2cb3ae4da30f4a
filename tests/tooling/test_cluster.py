"""The cluster's runs (runs/cluster/run.py), only when PMD_CHAOS=1: simulated hosts in network
namespaces need root. The three CI runs (with faults, as a rolling deploy, and as a rolling
upgrade from the previous release) take about two minutes each; a short run whose worker host
is killed behind its back must fail; and a run stopped after any step of its start, by an
error, Ctrl-C or SIGTERM, must leave nothing behind (a few seconds each)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runs.cluster.hosts import STEPS
from runs.cluster.netns import possible, sweep
from tests.helpers import CHECKOUT

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("PMD_CHAOS") != "1",
        reason="the cluster runs take minutes and need root; set PMD_CHAOS=1 to run them",
    ),
    # The chaos and cluster runs, one at a time on one xdist worker: each loads the machine.
    pytest.mark.xdist_group("runs"),
]
CLUSTER = [sys.executable, "-m", "runs.cluster"]
RUN = re.compile(r"^cluster run (pmd\d+) in (\S+)$", re.MULTILINE)


@pytest.fixture(autouse=True)
def _root() -> None:
    why = possible()
    assert why is None, f"CI runs as root on a machine that allows network namespaces: {why}"


# The rolling upgrade starts on the newest release tag before HEAD (in a clone without tags,
# the release migrations/RELEASED names) and rolls onto this checkout.
MODES = {
    "faults": [],
    "rolling-deploy": ["--rolling"],
    "rolling-upgrade": ["--upgrade-from", "previous"],
}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_cluster_ci_run_finds_no_violation(mode: list[str], tmp_path: Path) -> None:
    code, output = _run(["--ci", *mode], tmp_path, timeout=840)
    assert code == 0, output[-8000:]
    assert "cluster: OK: 0 violations" in output, output[-8000:]


# Two users for 25 s, no faults, and one worker host's process SIGKILLed as no fault of the
# run does: its other worker does the work, every other check holds, and the run fails.
@pytest.mark.timeout(420)
def test_cluster_run_fails_when_a_process_ends_unasked(tmp_path: Path) -> None:
    args = ["--users", "2", "--duration", "25", "--no-faults", "--break-crash-check"]
    code, output = _run(args, tmp_path, timeout=400)
    assert code == 1, output[-6000:]
    assert "cluster: FAILED: 1 violations" in output, output[-6000:]
    (violation,) = [v.strip() for v in output.splitlines() if "VIOLATION" in v]
    assert re.search(
        r"process starts that ended only when the run stopped them .*: wrk1: "
        r"python\S* -m pmd_service worker \(pid \d+\) ended unasked: killed by SIGKILL",
        violation,
    ), output[-6000:]


# One step of each kind of thing a run makes (its folder, namespaces, a database's processes,
# a store, the service's processes, the workload's tasks): every step is ~3.6 min, too much for
# CI beside the rest; PMD_CLUSTER_EVERY_STEP=1 runs them all.
EACH_KIND = ("folder", "hosts", "postgres", "store", "workers", "workload")
STOPPED_AT = STEPS if os.environ.get("PMD_CLUSTER_EVERY_STEP") == "1" else EACH_KIND
FAILURES = [(step, "error") for step in STOPPED_AT] + [("hosts", "sigint"), ("servers", "sigterm")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("step", "how"), FAILURES, ids=[f"{s}-{h}" for s, h in FAILURES])
def test_a_run_stopped_after_any_step_leaves_nothing_behind(
    step: str, how: str, tmp_path: Path
) -> None:
    code, output = _run(["--ci", "--fail-at", step, "--fail-with", how], tmp_path, timeout=100)
    assert code == {"error": 1, "sigint": 130, "sigterm": 143}[how], output[-6000:]
    assert f"] {step}\n" in output, output[-6000:]  # it did get that far


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("number", "when"),
    [(signal.SIGINT, "] database\n"), (signal.SIGTERM, "workload: ")],
    ids=["ctrl-c-during-the-start", "sigterm-during-the-workload"],
)
def test_a_signal_from_outside_leaves_nothing_behind(
    number: int, when: str, tmp_path: Path
) -> None:
    code, output = _run(["--ci"], tmp_path, timeout=120, signal_on=(when, number))
    assert code == 128 + number, output[-6000:]
    assert f"cluster: stopped by {signal.Signals(number).name}" in output, output[-6000:]


def _run(
    args: list[str], tmp_path: Path, timeout: float, signal_on: tuple[str, int] | None = None
) -> tuple[int, str]:
    """The run's exit status and output (stdout and stderr, into a file: a process the run
    left behind would hold a pipe open), `signal_on[1]` sent to it once its output shows
    `signal_on[0]`. Then nothing of the run may be left; whatever is, is removed."""
    # Started with Ctrl-C ignored (a background job of a shell does that), the run would inherit
    # it and never see the SIGINT a test sends.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    out = tmp_path / "output.txt"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*CLUSTER, *args], cwd=CHECKOUT, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        signalled = signal_on is None
        while proc.poll() is None and time.monotonic() < deadline:
            if not signalled and signal_on is not None and signal_on[0] in out.read_text():
                proc.send_signal(signal_on[1])
                signalled = True
            time.sleep(0.1)
        assert proc.poll() is not None, f"not over within {timeout:.0f} s"
        assert signalled, f"never reached {signal_on}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output = out.read_text()
        left = _leftovers(output)
    assert left == [], f"{left}\n{output[-6000:]}"
    return proc.returncode, output


def _leftovers(output: str) -> list[str]:
    """What the run named in `output` left: namespaces, processes (by the tag in their
    environment or the run folder on their command line), mounts, its folder. Each is removed
    once seen, so that one failed test leaves nothing behind either."""
    match = RUN.search(output)
    assert match is not None, output[-3000:]
    tag, folder = match[1], match[2]
    left = []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [
        f"namespace {line.split()[0]}" for line in listed.splitlines() if line.startswith(f"{tag}-")
    ]
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
    if left:
        sweep(tag)
        for pid in [int(x.split()[1].rstrip(":")) for x in left if x.startswith("process ")]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
    return left
