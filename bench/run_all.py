"""Run every benchmark, then render the docs from their figures: `python -m bench.run_all`
(`--only build,posts` reruns some, `--report-only` none)."""

from __future__ import annotations

import argparse
import sys

from bench import report
from bench.runner import Bench, record_machine, run_one, saved

# In the order they run: name, arguments, seconds before it is killed, what it measures.
BENCHMARKS = (
    Bench("build", ("--sizes", "16,32,64,128"), 1800, "ZIP builds, in process and by the worker"),
    Bench("posts", ("--depths", "1,5,10,15,19", "--big", "100000"), 900, "the posts list and hide"),
    Bench("filters", (), 600, "a filtered page at 20,000 posts, an action on 10,000"),
    Bench("host_cache", (), 600, "a one-post action beside 1,000,000 keys in the host's cache"),
    Bench("sse", (), 1800, "1,000 to 20,000 streams on one server: memory, events, storms"),
    Bench("sse_box", ("--box",), 2700, "12,500 to 100,000 streams, 1 to 7 servers", module="sse"),
    Bench("page", (), 600, "the dashboard page at 20,000 posts in Debian's Chromium"),
    Bench("store", (), 1200, "SeaweedFS: builds, reads, downloads, stalled readers"),
    Bench("export", (), 1200, "a full export of 3,000 artworks, folder and SeaweedFS"),
    Bench("scaling", (), 600, "a backlog's drain, 50 users at once"),
    Bench("upgrade", ("--upgrade-from", "previous"), 1800,
          "a rolling upgrade under 4,000 streams (root)", module="runs.cluster"),
)  # fmt: skip


def _how_long() -> str:
    bound = sum(b.limit_s for b in BENCHMARKS) / 3600
    lines = [f"How long: each benchmark is killed past its bound; all of them, at most {bound:.1f}"
             " h. What each took when last run is its figures file's `run.seconds`:"]  # fmt: skip
    for b in BENCHMARKS:
        run = saved(b.name).run or {}
        took = f"{run['seconds']} s" if "seconds" in run else "not recorded"
        lines.append(f"  {b.name:<14} bound {b.limit_s // 60:>3} min, last run {took}")
    lines.append("Files it rewrites (committed): bench/figures/<name>.json of each benchmark "
                 "run, docs/benchmarks.md, docs/benchmarks-details.md, docs/scaling.md.")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run_all", description=__doc__, epilog=_how_long(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--only", default="", help="comma-separated benchmarks to rerun")
    parser.add_argument("--report-only", action="store_true", help="render from saved figures")
    args = parser.parse_args(argv)
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
    report.write()
    if failures:
        print(f"failed: {', '.join(f'{n} ({w})' for n, w in failures.items())}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
