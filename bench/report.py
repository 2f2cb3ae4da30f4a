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

docs/scaling.md is bench/templates/scaling.md.j2 rendered from the figures of `bench.sse --box`
and `bench.scaling`'s NOTIFY fan-out; the cluster's figures on the page are dated one-offs,
written in the template. A part whose figures are missing says so.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.runner import FIGURES, MACHINE, Saved, saved
from support import chaos_pages, render
from support.stack import CHECKOUT

REPORT = CHECKOUT / "docs" / "benchmarks.md"
DETAILS = CHECKOUT / "docs" / "benchmarks-details.md"
SCALING = CHECKOUT / "docs" / "scaling.md"
# Every section of the page, in its order: the benchmark bench/<name>.py.
SECTIONS: tuple[str, ...] = ("build", "posts", "filters", "host_cache", "sse", "sse_box", "page")
SECTIONS += ("store", "scaling", "export")
NOTIFY_COLUMNS = ("first_p50_ms", "all_p50_ms", "all_p99_ms", "db_cpu_ms_per_notify",
                  "client_cpu_ms_per_notify")  # fmt: skip


def sections(folder: Path = FIGURES) -> dict[str, Saved]:
    """Each section's saved figures, turned into what its block of the template reads."""
    out = {}
    for name in SECTIONS:
        s = saved(name, folder)
        module = "sse" if name == "sse_box" else name  # `bench.sse --box`
        make = getattr(importlib.import_module(f"bench.{module}"), "section", None)
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


def _fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """The least-squares line's slope and intercept, neither below 0."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return max(slope, 0.0), max(my - slope * mx, 0.0)


def notify(folder: Path = FIGURES) -> Saved:
    """`bench.scaling`'s NOTIFY fan-out: its rows and the line through the database's CPU."""
    s = saved("scaling", folder)
    runs: list[dict[str, Any]] = (s.figures or {}).get("notify") or []
    if not runs:
        return replace(s, figures=None)
    slope, base = _fit([r["listeners"] for r in runs], [r["db_cpu_ms_per_notify"] for r in runs])
    rows = [[str(r["listeners"]), *(f"{r[k]:.2f}" for k in NOTIFY_COLUMNS)] for r in runs]
    return replace(s, figures={"rows": rows, "slope": slope, "base": base})


def scaling(folder: Path = FIGURES) -> str:
    """docs/scaling.md, from the template and the figures in `folder` alone."""
    return render.render("scaling.md.j2", sse_box=saved("sse_box", folder), notify=notify(folder))


def renders(figures: Path = FIGURES, runs: Path = chaos_pages.RUNS) -> dict[Path, str]:
    """Each generated page's path and text."""
    pages = {REPORT: benchmarks(figures), DETAILS: details(figures), SCALING: scaling(figures)}
    return pages | chaos_pages.renders(runs)


def write() -> None:
    render.write(renders())
