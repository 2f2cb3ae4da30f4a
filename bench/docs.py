"""Every generated page under docs/ and how to render it: the benchmarks, the scaling model, the
reliability summary and the chaos runs' transcripts. `python -m bench.run_all --report-only`
writes them all; tests/tooling/test_docs_rendered.py holds each committed page to its render."""

from __future__ import annotations

from pathlib import Path

from bench import report, scaling_doc
from bench.runner import FIGURES
from support import chaos_pages as chaos_doc
from support import render


def renders(figures: Path = FIGURES, runs: Path = chaos_doc.RUNS) -> dict[Path, str]:
    """Each generated page's path and text, from the committed figures and runs alone."""
    return {
        report.REPORT: report.render(figures),
        scaling_doc.REPORT: scaling_doc.render(figures),
    } | chaos_doc.renders(runs)


def write() -> None:
    render.write(renders())
    report.draw_plots()
