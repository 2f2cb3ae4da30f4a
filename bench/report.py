"""docs/benchmarks.md from bench/benchmarks.md.in and the committed figures in bench/figures/.

A section of the page is a block of the template and a figures file. The block starts at the
heading above its `${<name>_measured}` line and runs to the next heading of the same level or
above, or to the next heading whose block is another section's (its own deeper headings, such
as `### By ZIP size`, belong to it). Its other `${...}` placeholders are what
`SECTIONS[name].make` gives from the figures of `bench/figures/<name>.json`. A section with no
figures there is rendered as its heading and a "not measured yet" line: nothing of the page as
it was is ever carried over, so the page is always a render of the template and the figures.

To add a section: its block in the template, a `Section` in SECTIONS (the function that turns
its figures into the placeholders' text, and its plot if it has one), and its benchmark in
bench/run_all.py's list; its first run writes bench/figures/<name>.json.

A hand-written page may quote one of these texts inline, between `<!-- figure: <placeholder>
-->` and `<!-- /figure -->`: rendering writes the placeholder's value there (`quote`), so the
prose says what the tables say.

Every section is dated by its own benchmark's run (the `run` of its figures file), so a report
rendered after `--only X` says which figures are new and which are older.
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
from bench.runner import FIGURES, MACHINE, Saved, saved
from support.stack import CHECKOUT

TEMPLATE = CHECKOUT / "bench" / "benchmarks.md.in"
REPORT = CHECKOUT / "docs" / "benchmarks.md"
PLOTS = CHECKOUT / "docs" / "plots"
DOCS = CHECKOUT / "docs"


@dataclass(frozen=True)
class Section:
    """A benchmark's part of the report: the text of its placeholders from its figures, and
    its plot (drawn only from figures as the benchmark saved them)."""

    make: Callable[[Any], dict[str, str]]
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


def measured(s: Saved) -> str:
    """The line under a section's heading: when its figures were measured, and how."""
    run = s.run or {}
    if "before" in run:  # saved before each benchmark's run was recorded
        line = (
            f"*Measured on or before {run['before']} (figures saved before each benchmark was "
            f"dated); rerun with `python -m bench.run_all --only {s.name}`.*"
        )
    elif "load_start" in run:
        load = f"1-minute load average {run['load_start']} before, {run['load_end']} after"
        line = f"*Measured {run['date']} ({load}, {run['seconds']} s): `{run['command']}`.*"
    else:
        line = f"*Measured {run['date']} (the machine's load not recorded): `{run['command']}`.*"
    if s.failed is not None:
        line += (
            f" *Its last run, {s.failed['date']}, failed ({s.failed['why']}): these are the "
            "figures of the run before.*"
        )
    return line


def not_measured(s: Saved) -> str:
    if s.failed is not None:
        return (
            f"*Not measured yet: its last run, {s.failed['date']}, failed ({s.failed['why']}): "
            f"`{s.failed['command']}`.*"
        )
    return (
        f"*Not measured yet: no figures in `bench/figures/{s.name}.json` "
        f"(`python -m bench.run_all --only {s.name}` measures them).*"
    )


def machine_line(info: dict[str, str]) -> str:
    return (
        f"{info['cpu']}, {info['nproc']} CPUs available, {info['memory']} memory; "
        f"{info['os']}; {info['python']}, {info['postgres']}, {info['redis']}. Each section "
        "says when its benchmark ran, and the machine's load then (other work on the machine "
        "shows up in the figures)."
    )


_HEADING = re.compile(r"(?m)^(#{2,6}) ")
_MEASURED = re.compile(r"\$\{(\w+)_measured\}")


def blocks(template: str) -> dict[str, tuple[int, int]]:
    """Each section's block in the template, as (start, end) offsets: from the heading above
    its `${<name>_measured}`."""
    heads = [(m.start(), len(m[1])) for m in _HEADING.finditer(template)]
    ends = [pos for pos, _ in heads[1:]] + [len(template)]
    owner = {}  # heading offset -> the section whose `_measured` line stands under it
    for (pos, _), end in zip(heads, ends, strict=True):
        found = _MEASURED.search(template, pos, end)
        if found:
            owner[pos] = found[1]
    unknown = set(owner.values()) - SECTIONS.keys()
    if unknown:
        raise ValueError(f"the template names sections that SECTIONS lacks: {sorted(unknown)}")
    spans = {}
    for i, (pos, level) in enumerate(heads):
        if pos not in owner:
            continue
        end = next((p for p, lv in heads[i + 1 :] if lv <= level or p in owner), len(template))
        spans[owner[pos]] = (pos, end)
    return spans


def values(folder: Path = FIGURES) -> dict[str, str]:
    """Every placeholder's text from the figures saved in `folder` (sections without figures
    give none)."""
    out: dict[str, str] = {}
    for name, section in SECTIONS.items():
        s = saved(name, folder)
        if s.figures is not None:
            out |= {f"{name}_measured": measured(s)} | section.make(s.figures)
    return out


def render(folder: Path = FIGURES, template: str | None = None) -> str:
    """The page, from the template and the figures in `folder` alone."""
    text = TEMPLATE.read_text() if template is None else template
    filled = values(folder)
    machine = folder / MACHINE.name
    filled["machine"] = (
        machine_line(json.loads(machine.read_text()))
        if machine.exists()
        else f"not recorded (no `bench/figures/{MACHINE.name}`)."
    )
    # Blocks of sections without figures, last first so that the offsets stay valid.
    for name, (start, end) in sorted(blocks(text).items(), key=lambda kv: -kv[1][0]):
        if f"{name}_measured" not in filled:
            heading = text[start:end].split("\n", 1)[0]
            note = not_measured(saved(name, folder)).replace("$", "$$")
            text = f"{text[:start]}{heading}\n\n{note}\n\n{text[end:]}"
    return Template(text).substitute(filled)


_QUOTE = re.compile(r"(<!-- figure: (\w+) -->)(.*?)(<!-- /figure -->)", re.S)


def quote(page: str, filled: dict[str, str]) -> str:
    """`page` with each `<!-- figure: key -->…<!-- /figure -->` holding that text."""

    def one(m: re.Match[str]) -> str:
        text = filled.get(m[2], f"*not measured yet (`{m[2]}`)*")
        return f"{m[1]}{text}{m[4]}"

    return _QUOTE.sub(one, page)


def quoting_pages() -> list[Path]:
    """The hand-written pages (every generated one is rendered whole)."""
    generated = {REPORT.name, "scaling.md"}
    return [p for p in sorted(DOCS.glob("*.md")) if p.name not in generated]


def draw_plots(folder: Path = FIGURES) -> None:
    """The plots of every section whose figures are as their benchmark saved them (figures
    recovered from a page lack what only a plot shows; their plot is left as it was)."""
    PLOTS.mkdir(parents=True, exist_ok=True)
    for name, section in SECTIONS.items():
        s = saved(name, folder)
        if section.plot is not None and s.figures is not None and s.recovered is None:
            draw, file = section.plot
            draw(s.figures, PLOTS / file)


def write(folder: Path = FIGURES) -> None:
    REPORT.write_text(render(folder))
    filled = values(folder)
    for page in quoting_pages():
        text = page.read_text()
        if (new := quote(text, filled)) != text:
            page.write_text(new)
    draw_plots(folder)
    print(f"\nwrote {_shown(REPORT)} and plots in {_shown(PLOTS)}/")


def _shown(path: Path) -> Path:
    return path.relative_to(CHECKOUT) if path.is_relative_to(CHECKOUT) else path
