"""The docs the benchmarks and the chaos runs write are renders of their templates and the
committed figures (bench/figures/, harness/chaos_runs/), and a hand edit of a generated part
fails here. `python -m bench.run_all --only X` dates only what it reran, a failed rerun keeps
the figures before it and says so, and a section without figures says "not measured yet"
instead of keeping any text of the page."""

from __future__ import annotations

import difflib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import report, runner, scaling_doc
from bench.run_all import BENCHMARKS
from harness import chaos_doc
from tests.helpers import CHECKOUT

OLD = {"date": "2026-01-02 03:04 UTC", "load_start": "0.50", "load_end": "0.60",
       "command": "python -m bench.bdr_e2e", "seconds": 42}  # fmt: skip
E2E = {"artworks": 128, "samples_ms": [60.0, 70.0], "p50_ms": 65.0, "p99_ms": 70.0}
JOB = {
    side: {"job_s": 0.2, "floor_s": 0.3, "original_s": 3.0, "bytes": 129e6}
    for side in ("large", "small")
}
TEMPLATE = (
    "${machine}\n## POST → ready\n${bdr_e2e_measured}\n\n${e2e_figures}\n"
    "## The whole job\n${job_measured}\n\n${job_table}\n\n### Its note\n\n${job_note}\n"
    "## Measurements behind the code\nhand-written\n"
)
MACHINE = {"cpu": "CPU", "nproc": "2", "memory": "1 GiB", "os": "OS", "python": "Python",
           "postgres": "PostgreSQL", "redis": "Redis"}  # fmt: skip


def save(folder: Path, name: str, data: dict[str, Any]) -> None:
    (folder / f"{name}.json").write_text(json.dumps(data))


@pytest.fixture
def figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(runner, "SCRATCH", tmp_path / "scratch")
    folder = tmp_path / "figures"
    folder.mkdir()
    save(folder, "machine", MACHINE)
    return folder


def test_each_section_is_dated_by_its_own_run(figures: Path) -> None:
    save(figures, "bdr_e2e", {"run": OLD, "figures": E2E})
    save(figures, "job", {"run": {"before": "2025-12-31 00:00 UTC"}, "figures": JOB})
    page = report.render(figures, TEMPLATE)
    assert (
        "*Measured 2026-01-02 03:04 UTC (1-minute load average 0.50 before, 0.60 after, 42 s): "
        "`python -m bench.bdr_e2e`.*\n\n2 sequential BDRs: **p50 65 ms" in page
    )
    assert "*Measured on or before 2025-12-31 00:00 UTC (figures saved before each" in page
    assert page.count("2026-01-02") == 1  # never given another section's date


def test_a_section_without_figures_says_so_and_keeps_nothing(figures: Path) -> None:
    save(figures, "bdr_e2e", {"run": OLD, "figures": E2E})
    page = report.render(figures, TEMPLATE)
    # The whole block of the job, its own deeper heading too, is one line saying so.
    assert page.endswith(
        "## The whole job\n\n*Not measured yet: no figures in `bench/figures/job.json` "
        "(`python -m bench.run_all --only job` measures them).*\n\n"
        "## Measurements behind the code\nhand-written\n"
    )
    assert "### Its note" not in page
    assert "p50 65 ms" in page  # the section with figures is rendered all the same


def test_a_failed_first_run_is_said(figures: Path) -> None:
    why = runner.run_one(runner.Bench("job", (), 60, module="no_such_benchmark"), figures)
    assert why is not None and "status 1" in why
    page = report.render(figures, TEMPLATE)
    assert "*Not measured yet: its last run, " in page
    assert "failed (exited with status 1): `python -m bench.no_such_benchmark`.*" in page


def test_a_failed_rerun_keeps_the_figures_before_and_says_so(figures: Path) -> None:
    save(figures, "bdr_e2e", {"run": OLD, "figures": E2E})
    save(figures, "job", {"run": OLD | {"command": "python -m bench.job"}, "figures": JOB})
    before = (figures / "bdr_e2e.json").read_text()
    why = runner.run_one(runner.Bench("job", (), 60, module="no_such_benchmark"), figures)
    assert why is not None and "status 1" in why
    kept = runner.saved("job", figures)
    assert kept.figures == JOB and kept.run is not None and kept.run["date"] == OLD["date"]
    assert kept.failed is not None and kept.failed["why"] == why
    assert (figures / "bdr_e2e.json").read_text() == before  # no other benchmark's file
    page = report.render(figures, TEMPLATE)
    assert f"failed ({why}): these are the figures of the run before.*" in page
    assert "| ~1 MB each (129 MB) | 200 ms |" in page


def test_a_section_the_template_names_must_exist(figures: Path) -> None:
    with pytest.raises(ValueError, match="no_such_section"):
        report.render(figures, TEMPLATE + "## X\n${no_such_section_measured}\n")


# --- the committed docs are renders of their templates and the committed figures ---------------

REDO = (
    "it is generated: edit its template (bench/*.md.in) or the code that renders it, then "
    "render it again with `python -m bench.run_all --report-only` (chaos sections: from "
    "harness/chaos_runs/, by `python -m harness.chaos ... --doc`)"
)


def renders() -> dict[Path, str]:
    """Every generated page, or generated part of a page, as the committed figures render it."""
    out = {report.REPORT: report.render(), scaling_doc.REPORT: scaling_doc.render()}
    filled = report.values()
    for page in report.quoting_pages():
        out[page] = report.quote(page.read_text(), filled)
    out[chaos_doc.DOC] = chaos_doc.render(out.get(chaos_doc.DOC, chaos_doc.DOC.read_text()))
    return out


def stale() -> list[str]:
    """The pages that differ from their render, each with the first lines of the difference."""
    found = []
    for page, text in renders().items():
        committed = page.read_text()
        if committed != text:
            diff = difflib.unified_diff(
                text.splitlines(), committed.splitlines(), "render", page.name, lineterm="", n=0
            )
            found.append(f"{page.name}: {REDO}\n" + "\n".join(list(diff)[2:22]))
    return found


def test_the_docs_are_renders_of_their_templates_and_the_committed_figures() -> None:
    problems = stale()
    assert not problems, "\n\n".join(problems)


def test_every_section_of_the_report_has_its_block() -> None:
    assert set(report.blocks(report.TEMPLATE.read_text())) == set(report.SECTIONS)


@pytest.mark.parametrize(
    ("page", "before", "after"),
    [
        ("benchmarks.md", "| seed algorithm | 3345 ms |", "| seed algorithm | 2345 ms |"),
        ("scaling.md", "gave 0.69× the rate of one", "gave 0.96× the rate of one"),
        ("reliability.md", "wall time 255 s;", "wall time 200 s;"),
        ("architecture.md", "obstore 770 ms", "obstore 700 ms"),
    ],
)
def test_a_hand_edit_of_a_generated_part_fails(
    page: str, before: str, after: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(CHECKOUT / "docs", docs)
    text = (docs / page).read_text()
    assert before in text
    (docs / page).write_text(text.replace(before, after, 1))
    monkeypatch.setattr(report, "REPORT", docs / "benchmarks.md")
    monkeypatch.setattr(report, "DOCS", docs)
    monkeypatch.setattr(scaling_doc, "REPORT", docs / "scaling.md")
    monkeypatch.setattr(chaos_doc, "DOC", docs / "reliability.md")
    assert [p.split(":", 1)[0] for p in stale()] == [page]


def test_a_chaos_run_is_saved_and_rendered_into_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "page.md"
    doc.write_text("a\n<!-- chaos run: --ci -->\nold\n<!-- /chaos run: --ci -->\nb\n")
    chaos_doc.write(["--ci", "--doc"], "chaos: OK: 0 violations\n", 0, doc, tmp_path / "runs")
    saved = json.loads((tmp_path / "runs" / "ci.json").read_text())
    assert saved["argv"] == ["--ci", "--doc"] and saved["exit"] == 0
    assert doc.read_text() == (
        "a\n<!-- chaos run: --ci -->\nWritten by `.venv/bin/python -m harness.chaos --ci --doc` "
        f"on {saved['date']} UTC (exit 0):\n\n```\nchaos: OK: 0 violations\n```\n"
        "<!-- /chaos run: --ci -->\nb\n"
    )
    (tmp_path / "runs" / "ci.json").unlink()
    assert "Not run yet: no saved output" in chaos_doc.render(doc.read_text(), tmp_path / "runs")


def test_run_alls_help_says_how_long_and_what_it_rewrites() -> None:
    """`python -m bench.run_all --help` names every benchmark with its time bound, the bound of
    them all, and the committed files a run rewrites (issue 33)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--help"],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    text = done.stdout
    total = sum(b.limit_s for b in BENCHMARKS) / 3600
    assert f"all of them, at most {total:.1f} h" in text
    for b in BENCHMARKS:
        assert f"  {b.name:<14} bound {b.limit_s // 60:>3} min, last run " in text, b.name
    rewrites = text[text.index("Files it rewrites (committed):") :]
    for path in (
        "bench/figures/<name>.json",
        "docs/benchmarks.md",
        "docs/scaling.md",
        "docs/plots",
    ):
        assert path in rewrites, path
