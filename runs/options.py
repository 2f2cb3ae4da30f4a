"""The command-line options the chaos and the cluster runs share: the workload's size."""

from __future__ import annotations

import argparse


def parse_with_workload(
    p: argparse.ArgumentParser, argv: list[str] | None, *, ci_users: int, ci_duration: int
) -> argparse.Namespace:
    p.add_argument(
        "--duration", type=float, help=f"seconds of workload (default 180, --ci {ci_duration})"
    )
    p.add_argument(
        "--users", type=int, help=f"users with an actor each (default 8, --ci {ci_users})"
    )
    p.add_argument(
        "--no-faults",
        action="store_true",
        help="inject nothing: the workload and every check alone",
    )
    args = p.parse_args(argv)
    args.duration = args.duration or (float(ci_duration) if args.ci else 180.0)
    args.users = args.users or (ci_users if args.ci else 8)
    return args
