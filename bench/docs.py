"""Every generated page under docs/, rendered from the committed figures and chaos runs alone
(`python -m bench.run_all --report-only`; tests/tooling/test_docs_rendered.py checks them)."""

from __future__ import annotations

from pathlib import Path

from bench import report, scaling_doc
from bench.runner import FIGURES
from support import chaos_pages as chaos_doc
from support import render


def renders(figures: Path = FIGURES, runs: Path = chaos_doc.RUNS) -> dict[Path, str]:
    """Each generated page's path and text."""
    pages = {report.REPORT: report.render(figures)}
    return pages | {scaling_doc.REPORT: scaling_doc.render(figures)} | chaos_doc.renders(runs)


def write() -> None:
    render.write(renders())
