"""Every generated page under docs/, from the committed figures and chaos runs alone. To add a
benchmark: its blocks in both benchmarks templates, its name in SECTIONS and in run_all."""

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
    out = {}
    for name in SECTIONS:
        s = saved(name, folder)
        module = importlib.import_module(MODULES.get(name, f"bench.{name}"))
        make = getattr(module, "section", None)
        out[name] = s if s.figures is None or make is None else replace(s, figures=make(s.figures))
    return out


def benchmarks(folder: Path = FIGURES, template: str = "benchmarks.md.j2") -> str:
    machine = folder / MACHINE.name
    return render.render(
        template,
        s=sections(folder),
        machine=json.loads(machine.read_text()) if machine.exists() else None,
    )


def details(folder: Path = FIGURES) -> str:
    return benchmarks(folder, "benchmarks-details.md.j2")


def scaling(folder: Path = FIGURES) -> str:
    return render.render("scaling.md.j2", sse_box=saved("sse_box", folder))


def renders(figures: Path = FIGURES, runs: Path = chaos_pages.RUNS) -> dict[Path, str]:
    pages = {REPORT: benchmarks(figures), DETAILS: details(figures), SCALING: scaling(figures)}
    return pages | chaos_pages.renders(runs)


def write() -> None:
    render.write(renders())
