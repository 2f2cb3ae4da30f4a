"""docs/scaling.md: bench/templates/scaling.md.j2 rendered from the figures of `bench.sse --box`
and `bench.scaling`'s NOTIFY fan-out; the cluster's figures on the page are dated one-offs,
written in the template. A part whose figures are missing says so."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.runner import FIGURES, Saved, saved
from support import render as pages
from support.stack import CHECKOUT

REPORT = CHECKOUT / "docs" / "scaling.md"
# The streams table's columns: each level's figure and its format ("–": none).
SSE_COLUMNS = (("streams", ","), ("processes", "d"), ("held", ","), ("kb_per_stream_rss", ".1f"),
               ("kb_per_stream_slab", ".1f"), ("event_p99_ms", ".1f"), ("burst_all_s", ".2f"),
               ("storm_s", ".1f"), ("storm_5xx", "d"))  # fmt: skip
NOTIFY_COLUMNS = ("first_p50_ms", "all_p50_ms", "all_p99_ms", "db_cpu_ms_per_notify",
                  "client_cpu_ms_per_notify")  # fmt: skip


def sse_box(folder: Path = FIGURES) -> Saved:
    """The box's stream figures (the `box` of `bench.sse --box`, run_all's `sse_box`) as the
    table's rows."""
    s = saved("sse_box", folder)
    box = s.figures.get("box") if isinstance(s.figures, dict) else None
    rows = [["–" if lv.get(k) is None else format(lv[k], fmt) for k, fmt in SSE_COLUMNS]
            for lv in box["levels"]] if box and box.get("levels") else None  # fmt: skip
    return replace(s, figures=rows)


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


def render(folder: Path = FIGURES) -> str:
    """The page, from the template and the figures in `folder` alone."""
    return pages.render("scaling.md.j2", sse_box=sse_box(folder), notify=notify(folder))
