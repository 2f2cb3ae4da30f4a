"""Every generated page under docs/, rendered from the committed figures and chaos runs alone
(`python -m bench.run_all --report-only`; tests/tooling/test_docs_rendered.py checks them).

docs/benchmarks.md is bench/templates/benchmarks.md.j2: one table of every target, each row its
figure, verdict, date and command, a benchmark's rows a `{% call(f) rows(s.<name>, …) %}` block
that reads `f`, the figures of `bench/figures/<name>.json` or what the benchmark's own
`section(figures)` makes of them. docs/benchmarks-details.md is
bench/templates/benchmarks-details.md.j2: each benchmark's method and figures, a
`{% call(f) section(s.<name>, "heading") %}` block under the line saying when it was measured.
A benchmark with no figures is one "not measured yet" row, or line, on each page. To add one:
its blocks in both templates, its name in SECTIONS, and its benchmark in bench/run_all.py's
list; its first run writes bench/figures/<name>.json.

docs/scaling.md is bench/templates/scaling.md.j2 rendered from the figures of `bench.sse --box`;
the cluster's figures on the page are dated one-offs, written in the template. A part whose
figures are missing says so.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import replace
from pathlib import Path

from bench.runner import FIGURES, MACHINE, Saved, saved
from support import chaos_pages, render
from support.stack import CHECKOUT

REPORT = CHECKOUT / "docs" / "benchmarks.md"
DETAILS = CHECKOUT / "docs" / "benchmarks-details.md"
SCALING = CHECKOUT / "docs" / "scaling.md"
# Every section of the page, in its order: the benchmark bench/<name>.py (or its MODULES).
SECTIONS: tuple[str, ...] = ("build", "posts", "filters", "host_cache", "sse", "sse_box", "page")
SECTIONS += ("store", "scaling", "export", "upgrade")
# A section's module where not bench.<name>: a mode of another benchmark, or a run.
MODULES = {"sse_box": "bench.sse", "upgrade": "runs.cluster"}


def sections(folder: Path = FIGURES) -> dict[str, Saved]:
    """Each section's saved figures, turned into what its block of the template reads."""
    out = {}
    for name in SECTIONS:
        s = saved(name, folder)
        module = importlib.import_module(MODULES.get(name, f"bench.{name}"))
        make = getattr(module, "section", None)
        out[name] = s if s.figures is None or make is None else replace(s, figures=make(s.figures))
    return out


def benchmarks(folder: Path = FIGURES, template: str = "benchmarks.md.j2") -> str:
    """docs/benchmarks.md (or its details' page), from its template and `folder`'s figures alone."""
    machine = folder / MACHINE.name
    return render.render(
        template,
        s=sections(folder),
        machine=json.loads(machine.read_text()) if machine.exists() else None,
    )


def details(folder: Path = FIGURES) -> str:
    return benchmarks(folder, "benchmarks-details.md.j2")


def scaling(folder: Path = FIGURES) -> str:
    """docs/scaling.md, from the template and the figures in `folder` alone."""
    return render.render("scaling.md.j2", sse_box=saved("sse_box", folder))


def renders(figures: Path = FIGURES, runs: Path = chaos_pages.RUNS) -> dict[Path, str]:
    """Each generated page's path and text."""
    pages = {REPORT: benchmarks(figures), DETAILS: details(figures), SCALING: scaling(figures)}
    return pages | chaos_pages.renders(runs)


def write() -> None:
    render.write(renders())
