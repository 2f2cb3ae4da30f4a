"""Run every benchmark, then render the docs from their figures: `python -m bench.run_all`
(`--only build,posts` reruns some, `--report-only` none)."""

from __future__ import annotations

import argparse
import sys

from bench import report
from bench.runner import BENCHMARKS as BENCHMARKS  # re-exported: the benchmarks it runs
from bench.runner import record_machine, run_one, saved
from support import render


def _how_long() -> str:
    bound = sum(b.limit_s for b in BENCHMARKS) / 3600
    lines = [
        f"How long: each benchmark is killed past its bound; all of them, at most {bound:.1f}"
        " h. What each took when last run is its figures file's `run.seconds`:"
    ]
    for b in BENCHMARKS:
        run = saved(b.name).run or {}
        took = f"{run['seconds']} s" if "seconds" in run else "not recorded"
        lines.append(f"  {b.name:<14} bound {b.limit_s // 60:>3} min, last run {took}")
    lines.append(
        "Files it rewrites (committed): bench/figures/<name>.json of each benchmark "
        "run, docs/benchmarks.md, docs/benchmarks-details.md, docs/scaling.md."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m bench.run_all",
        description=__doc__,
        epilog=_how_long(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", default="", help="comma-separated benchmarks to rerun")
    parser.add_argument("--report-only", action="store_true", help="render from saved figures")
    args = parser.parse_args()
    names = [b.name for b in BENCHMARKS]
    chosen = [n for n in args.only.split(",") if n] or names
    if unknown := sorted(set(chosen) - set(names)):
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(names)}")
    failures: dict[str, str] = {}
    if not args.report_only:
        record_machine()
        for bench in BENCHMARKS:
            if bench.name in chosen and (why := run_one(bench)) is not None:
                failures[bench.name] = why
                print(f"=== {bench.name}: {why}", flush=True)
    render.write(report.renders())
    if failures:
        print(f"failed: {', '.join(f'{n} ({w})' for n, w in failures.items())}")
    sys.exit(1 if failures else 0)
