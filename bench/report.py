"""docs/benchmarks.md from bench/benchmarks.md.in and the saved figures, with its plots.

Every section is dated by its own benchmark's last run (runs.json), so a report rendered after
`--only X` says which figures are new and which are older.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from bench import plots, sections_builds, sections_export, sections_serving
from bench.runner import MACHINE, RESULTS, runs
from harness.stack import CHECKOUT

TEMPLATE = CHECKOUT / "bench" / "benchmarks.md.in"
REPORT = CHECKOUT / "docs" / "benchmarks.md"
PLOTS = CHECKOUT / "docs" / "plots"


@dataclass(frozen=True)
class Section:
    """A benchmark's part of the report: the placeholders its text fills, and its plot."""

    make: Callable[[Any], dict[str, str]]
    keys: tuple[str, ...]
    plot: tuple[Callable[[Any, Path], None], str] | None = None


SECTIONS: dict[str, Section] = {
    "zip": Section(sections_builds.zip_section,
                   ("zip_table", "zip_big", "zip_seed_note", "zip_durable_ratio",
                    "zip_small_ms", "zip_by_size"),
                   (lambda f, path: plots.plot_zip(f["by_size"], path) if f.get("by_size") else None,
                    "zip_build.png")),
    "bdr_e2e": Section(sections_builds.e2e_section, ("e2e_figures",)),
    "job": Section(sections_builds.job_section, ("job_table", "job_note")),
    "processes": Section(sections_serving.processes_section,
                         ("processes_table", "processes_ratio", "processes_sigterm")),
    "posts": Section(sections_serving.posts_section,
                     ("posts_requests", "posts_table", "posts_targets", "posts_depth_table",
                      "posts_depth_note", "posts_cases_table", "posts_scale"),
                     (plots.plot_posts, "posts_depth.png")),
    "sse": Section(sections_serving.sse_section, ("sse_table", "sse_targets", "sse_update"),
                   (plots.plot_sse, "sse_latency.png")),
    "sse_box": Section(sections_serving.sse_box_section,
                       ("sse_box_table", "sse_box_targets", "sse_box_notes"),
                       (plots.plot_sse_box, "sse_box.png")),
    "page": Section(sections_serving.page_section, ("page_runs", "page_table", "page_targets")),
    "host_migrate": Section(sections_serving.host_migrate_section,
                            ("host_migrate_table", "host_migrate_targets")),
    "worker_memory": Section(sections_builds.worker_memory_section, ("worker_memory_figures",)),
    "store": Section(sections_builds.store_section,
                     ("store_table", "store_clients", "store_downloads", "store_reads")),
    "proxy_memory": Section(sections_builds.proxy_memory_section, ("proxy_memory_figures",)),
    "scaling": Section(sections_serving.scaling_section,
                       ("scaling_backlog_table", "scaling_stops", "scaling_burst_table",
                        "scaling_events", "scaling_replay_table", "scaling_cleanup_table"),
                       (plots.plot_scaling, "scaling.png")),
    "export": Section(sections_export.export_section, ("export_table", "export_notes")),
}  # fmt: skip


def measured(name: str, run: dict[str, Any] | None, before: str | None = None) -> str:
    """The line under a section's heading: when its figures were measured, and how. `before`:
    the date of the last whole report, for figures saved before each benchmark was dated."""
    if run is None:
        when = f"on or before {before}" if before else "date not recorded"
        return (
            f"*Measured {when} (figures saved before each benchmark was dated); rerun with "
            f"`python -m bench.run_all --only {name}`.*"
        )
    load = f"1-minute load average {run['load_start']} before, {run['load_end']} after"
    if "failed" in run:
        return f"*Last run {run['date']} failed ({run['failed']}): `{run['command']}`.*"
    return f"*Measured {run['date']} ({load}, {run['seconds']} s): `{run['command']}`.*"


def not_measured(name: str, why: str | None) -> str:
    return f"*Not measured in this run (`bench.{name}` {why or 'has no saved figures'}).*"


def machine_line(info: dict[str, str]) -> str:
    return (
        f"{info['cpu']}, {info['nproc']} CPUs available, {info['memory']} memory; "
        f"{info['os']}; {info['python']}, {info['postgres']}, {info['redis']}. Each section "
        "says when its benchmark ran, and the machine's load then (other work on the machine "
        "shows up in the figures)."
    )


def render(failures: dict[str, str]) -> None:
    dated = runs()
    info = json.loads(MACHINE.read_text())
    PLOTS.mkdir(parents=True, exist_ok=True)
    values: dict[str, str] = {"machine": machine_line(info)}
    for name, section in SECTIONS.items():
        # machine.json carried the one date of the whole report before runs.json existed.
        values[f"{name}_measured"] = measured(name, dated.get(name), info.get("date"))
        path = RESULTS / f"{name}.json"
        if name in failures or not path.exists():
            values |= dict.fromkeys(section.keys, not_measured(name, failures.get(name)))
            continue
        figures = json.loads(path.read_text())
        values |= section.make(figures)
        if section.plot is not None:
            draw, file = section.plot
            draw(figures, PLOTS / file)
    unsaved = [n for n in SECTIONS if n not in failures and not (RESULTS / f"{n}.json").exists()]
    text = Template(TEMPLATE.read_text()).substitute(values)
    if REPORT.exists():
        text = keep_unsaved(text, REPORT.read_text(), unsaved)
    REPORT.write_text(text)
    print(f"\nwrote {_shown(REPORT)} and plots in {_shown(PLOTS)}/")


def _blocks(text: str) -> dict[str, str]:
    """A report's sections by their `## ` heading line."""
    parts = re.split(r"(?m)^(?=## )", text)
    return {part.split("\n", 1)[0]: part for part in parts if part.startswith("## ")}


def keep_unsaved(new: str, old: str, unsaved: list[str]) -> str:
    """`new`, with the sections of benchmarks whose figures are not saved here (a checkout that
    never ran them) as `old` had them: `--only X` there must not blank or re-date the others."""
    template = _blocks(TEMPLATE.read_text())
    before = _blocks(old)
    for heading, block in _blocks(new).items():
        source = template.get(heading, "")
        if any(f"${{{name}_measured}}" in source for name in unsaved) and heading in before:
            new = new.replace(block, before[heading])
    return new


def _shown(path: Path) -> Path:
    return path.relative_to(CHECKOUT) if path.is_relative_to(CHECKOUT) else path
