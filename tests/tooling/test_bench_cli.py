"""`python -m bench` lists every benchmark bench.run_all runs, and `python -m bench NAME` runs
that one, here with its `--help` (issue 34)."""

from __future__ import annotations

import subprocess

from bench.run_all import BENCHMARKS
from tests.helpers import run_python


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "bench", *args)


def test_the_listing_names_every_benchmark_with_what_it_measures() -> None:
    done = bench()
    assert done.returncode == 0, done.stderr
    listed = {
        line.split()[0]: line.split(maxsplit=1)[1]
        for line in done.stdout.splitlines()
        if line.startswith("  ")
    }
    for b in BENCHMARKS:
        assert b.name in listed, b.name
        assert len(listed[b.name]) > 10, b.name  # a line saying what it measures
    assert "sse --box" in listed["sse_box"]  # a mode of another benchmark says which


def test_one_benchmark_runs_by_its_short_name() -> None:
    done = bench("posts", "--help")
    assert done.returncode == 0, done.stderr
    assert "Benchmark of the posts endpoints" in done.stdout and "--depths" in done.stdout
    done = bench("sse_box", "--help")  # run_all's mode, run with the mode's own arguments
    assert done.returncode == 0 and "--box" in done.stdout
    done = bench("upgrade", "--help")  # a run's module, named in full
    assert done.returncode == 0 and "runs.cluster" in done.stdout and "--json" in done.stdout
    done = bench("no_such_benchmark")
    assert done.returncode != 0 and "python -m bench` lists them" in done.stderr
