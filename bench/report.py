"""docs/benchmarks.md from bench/templates/benchmarks.md.j2 and the committed figures in
bench/figures/.

Each benchmark's part of the page is a `{% call(f) section(s.<name>, "heading") %}` block of the
template: its heading, the line saying when it was measured, and its text, which reads `f`,
what `SECTIONS[name].make` gives from the figures of `bench/figures/<name>.json`. A section with
no figures is its heading and a "not measured yet" line, so the page is always a render of the
template and the figures.

To add a section: its block in the template, a `Section` in SECTIONS (the function that turns
its figures into what the block reads, and its plot if it has one), and its benchmark in
bench/run_all.py's list; its first run writes bench/figures/<name>.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import plots, sections_builds, sections_export, sections_serving
from bench.runner import FIGURES, MACHINE, Saved, saved
from support import render as pages
from support.stack import CHECKOUT

TEMPLATE = "benchmarks.md.j2"
REPORT = CHECKOUT / "docs" / "benchmarks.md"
PLOTS = CHECKOUT / "docs" / "plots"


@dataclass(frozen=True)
class Section:
    """A benchmark's part of the report: what its block of the template reads, from its
    figures, and its plot (drawn only from figures as the benchmark saved them)."""

    make: Callable[[Any], dict[str, Any]]
    plot: tuple[Callable[[Any, Path], None], str] | None = None


SECTIONS: dict[str, Section] = {
    "zip": Section(sections_builds.zip_section,
                   (lambda f, path: plots.plot_zip(f["by_size"], path) if f.get("by_size") else None,
                    "zip_build.png")),
    "bdr_e2e": Section(sections_builds.e2e_section),
    "job": Section(sections_builds.job_section),
    "processes": Section(sections_serving.processes_section),
    "posts": Section(sections_serving.posts_section, (plots.plot_posts, "posts_depth.png")),
    "sse": Section(sections_serving.sse_section, (plots.plot_sse, "sse_latency.png")),
    "sse_box": Section(sections_serving.sse_box_section, (plots.plot_sse_box, "sse_box.png")),
    "page": Section(sections_serving.page_section),
    "host_migrate": Section(sections_serving.host_migrate_section),
    "worker_memory": Section(sections_builds.worker_memory_section),
    "store": Section(sections_builds.store_section),
    "proxy_memory": Section(sections_builds.proxy_memory_section),
    "scaling": Section(sections_serving.scaling_section, (plots.plot_scaling, "scaling.png")),
    "export": Section(sections_export.export_section),
}  # fmt: skip


def sections(folder: Path = FIGURES) -> dict[str, Saved]:
    """Each section's saved figures, turned into what its block of the template reads."""
    out = {}
    for name, section in SECTIONS.items():
        s = saved(name, folder)
        out[name] = s if s.figures is None else replace(s, figures=section.make(s.figures))
    return out


def render(folder: Path = FIGURES) -> str:
    """The page, from the template and the figures in `folder` alone."""
    machine = folder / MACHINE.name
    return pages.render(
        TEMPLATE,
        s=sections(folder),
        machine=json.loads(machine.read_text()) if machine.exists() else None,
    )


def draw_plots(folder: Path = FIGURES) -> None:
    """The plots of every section whose figures are as their benchmark saved them (figures
    recovered from a page lack what only a plot shows; their plot is left as it was)."""
    PLOTS.mkdir(parents=True, exist_ok=True)
    for name, section in SECTIONS.items():
        s = saved(name, folder)
        if section.plot is not None and s.figures is not None and s.recovered is None:
            draw, file = section.plot
            draw(s.figures, PLOTS / file)
