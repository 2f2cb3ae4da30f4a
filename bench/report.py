"""docs/benchmarks.md from bench/templates/benchmarks.md.j2 and the committed figures in
bench/figures/.

Each benchmark's part of the page is a `{% call(f) section(s.<name>, "heading") %}` block of the
template: its heading, the line saying when it was measured, and its text, which reads `f`, the
figures of `bench/figures/<name>.json` (through its function in SECTIONS, where the text needs
more than a ratio of them). A section with no figures is its heading and a "not measured yet"
line, so the page is always a render of the template and the figures.

To add a section: its block in the template, its function in SECTIONS (and its plot in PLOTS)
if it needs one, and its benchmark in bench/run_all.py's list; its first run writes
bench/figures/<name>.json.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import plots
from bench.export import TARGET_BDR_SLOWDOWN, TARGET_GROWTH_MB, TARGET_THROUGHPUT
from bench.runner import FIGURES, MACHINE, Saved, saved
from support import render as pages
from support.stack import CHECKOUT

TEMPLATE = "benchmarks.md.j2"
REPORT = CHECKOUT / "docs" / "benchmarks.md"
PLOTS = CHECKOUT / "docs" / "plots"
Figures = dict[str, Any]


def processes(f: Figures) -> Figures:
    rows = f["by_processes"]
    return {
        "rows": rows,
        "ratio": rows[1]["list_rps"] / rows[0]["list_rps"],
        "sigterm": f["sigterm"],
    }


def sse(levels: list[Figures]) -> Figures:
    top = max(lv["subscribers"] for lv in levels)
    return {
        "levels": levels,
        "top": top,
        "kb": max(lv["kb_per_subscriber"] for lv in levels),
        "p99": max(lv["single"]["p99_ms"] for lv in levels),
        "worst": max(lv["burst"]["max_ms"] for lv in levels),
        "gc_max": max(lv.get("gc_pause_max_ms", float("inf")) for lv in levels),
        "gc_cpu": max(lv.get("gc_pause_max_cpu_ms", float("inf")) for lv in levels),
        "delivered": all(
            lv["burst_delivered"] == f"{lv['subscribers']}/{lv['subscribers']}"
            and lv["errors"] == 0
            for lv in levels
        ),
        "one": all(lv["listeners"] == 1 for lv in levels),
        "fd_bound": top < 20_000 and any(lv.get("asked", 0) > lv["subscribers"] for lv in levels),
    }


def sse_box(f: Figures) -> Figures:
    box: Figures = f["box"]
    levels = box["levels"]
    top = max(levels, key=lambda lv: lv["streams"])
    kbs = [lv["kb_per_stream_rss"] for lv in levels]
    out: Figures = box | {"top": top, "worst_kb": max(kbs), "best_kb": min(kbs)}
    if "base" in top:
        cores = top.get("cores", 2)
        taken = top["base"]["storm_cpu_ms"]["machine"]
        out |= {
            "cores": cores,
            "budget": box["targets"]["storm_s"] * cores * 1000 / top["streams"],
            "taken": taken,
            "service": top["storm_cpu_ms"]["machine"] - taken,
        }
    return out


def proxy_memory(f: Figures) -> Figures:
    frozen = f["frozen"]
    answers = [
        {
            "label": label,
            # The median, as bench.proxy_memory prints it.
            "well_s": statistics.median(a["seconds"] for a in frozen[f"well_{what}"]),
            "slowest_s": max(a["seconds"] for a in frozen[f"frozen_{what}"]),
            "statuses": ", ".join(sorted({str(a["status"]) for a in frozen[f"frozen_{what}"]})),
        }
        for what, label in (
            ("get_redirect", "download, redirect mode"),
            ("get_proxy", "download, proxy mode"),
            ("delete", "removal"),
        )
    ]
    return f | {"answers": answers}


# The stores bench.export measures, in the report's order: name, label, short label.
STORES = (("folder", "folder (`BDR_PATH`)", "folder"),
          ("seaweedfs", "SeaweedFS (`BDR_STORE=s3://…`)", "SeaweedFS"))  # fmt: skip


def export(f: Figures) -> Figures:
    measured = [
        {"name": name, "label": label, "short": short} | f["stores"][name]
        for name, label, short in STORES
        if name in f["stores"]
    ]
    target = {"throughput": TARGET_THROUGHPUT, "growth_mb": TARGET_GROWTH_MB,
              "slowdown": TARGET_BDR_SLOWDOWN}  # fmt: skip
    return f | {"measured": measured, "target": target}


def _same(f: Any) -> Any:
    return f


# Every section of the page, in its order, and what its block reads of its figures.
SECTIONS: dict[str, Callable[[Any], Figures]] = {
    "zip": _same, "bdr_e2e": _same, "job": _same, "processes": processes, "posts": _same,
    "sse": sse, "sse_box": sse_box, "page": _same, "host_migrate": _same,
    "worker_memory": _same, "store": _same, "proxy_memory": proxy_memory, "scaling": _same,
    "export": export,
}  # fmt: skip
# The plots, drawn from figures as their benchmark saved them: section → (draw, file).
PLOTS_OF: dict[str, tuple[Callable[[Any, Path], None], str]] = {
    "zip": (plots.plot_zip, "zip_build.png"),
    "posts": (plots.plot_posts, "posts_depth.png"),
    "sse": (plots.plot_sse, "sse_latency.png"),
    "sse_box": (plots.plot_sse_box, "sse_box.png"),
    "scaling": (plots.plot_scaling, "scaling.png"),
}


def sections(folder: Path = FIGURES) -> dict[str, Saved]:
    """Each section's saved figures, turned into what its block of the template reads."""
    out = {}
    for name, make in SECTIONS.items():
        s = saved(name, folder)
        out[name] = s if s.figures is None else replace(s, figures=make(s.figures))
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
    for name, (draw, file) in PLOTS_OF.items():
        s = saved(name, folder)
        if s.figures is not None and s.recovered is None:
            draw(s.figures, PLOTS / file)
