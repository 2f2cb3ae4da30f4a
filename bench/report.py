"""docs/benchmarks.md from bench/templates/benchmarks.md.j2 and the committed figures in
bench/figures/.

Each benchmark's part of the page is a `{% call(f) section(s.<name>, "heading") %}` block of the
template: its heading, the line saying when it was measured, and its text, which reads `f`, the
figures of `bench/figures/<name>.json`, or what the benchmark's own `section(figures)` makes of
them where the text needs more than a ratio. A section with no figures is its heading and a
"not measured yet" line, so the page is always a render of the template and the figures.

To add a section: its block in the template, its name in SECTIONS, and its benchmark in
bench/run_all.py's list; its first run writes bench/figures/<name>.json.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from bench.runner import FIGURES, MACHINE, Saved, saved
from support import render as pages
from support.stack import CHECKOUT

TEMPLATE = "benchmarks.md.j2"
REPORT = CHECKOUT / "docs" / "benchmarks.md"
# Every section of the page, in its order: the benchmark bench/<name>.py.
SECTIONS = ("build", "posts", "filters", "sse", "sse_box", "page", "store", "scaling", "export")


def benchmark(name: str) -> ModuleType:
    return importlib.import_module(f"bench.{name}")


def sections(folder: Path = FIGURES) -> dict[str, Saved]:
    """Each section's saved figures, turned into what its block of the template reads."""
    out = {}
    for name in SECTIONS:
        s, make = saved(name, folder), getattr(benchmark(name), "section", None)
        out[name] = s if s.figures is None or make is None else replace(s, figures=make(s.figures))
    return out


def render(folder: Path = FIGURES) -> str:
    """The page, from the template and the figures in `folder` alone."""
    machine = folder / MACHINE.name
    return pages.render(
        TEMPLATE,
        s=sections(folder),
        machine=json.loads(machine.read_text()) if machine.exists() else None,
    )
