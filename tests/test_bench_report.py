"""`python -m bench.run_all --only X` dates only what it reran: each benchmark's run is recorded
on its own, and the report dates each section by its own benchmark's run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report, runner

OLD = {"date": "2026-01-02 03:04 UTC", "load_start": "0.50", "load_end": "0.60",
       "command": "python -m bench.zip --sizes 16", "seconds": 42}  # fmt: skip


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs.json")
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "MACHINE", tmp_path / "machine.json")
    template = tmp_path / "page.md.in"
    template.write_text("${machine}\nzip: ${zip_measured}\njob: ${job_measured}\n${job_table}\n")
    monkeypatch.setattr(report, "TEMPLATE", template)
    monkeypatch.setattr(report, "REPORT", tmp_path / "page.md")
    monkeypatch.setattr(report, "PLOTS", tmp_path / "plots")
    (tmp_path / "machine.json").write_text(json.dumps(
        {"cpu": "CPU", "nproc": "2", "memory": "1 GiB", "os": "OS", "python": "Python",
         "postgres": "PostgreSQL", "redis": "Redis"}))  # fmt: skip
    (tmp_path / "runs.json").write_text(json.dumps({"zip": OLD}))
    return tmp_path


def test_a_rerun_records_only_its_own_run(results: Path) -> None:
    why = runner.run_one(runner.Bench("no_such_benchmark", (), 60))
    assert why is not None and "status 1" in why
    recorded = runner.runs()
    assert recorded["zip"] == OLD  # not re-dated by a run that did not measure it
    assert recorded["no_such_benchmark"]["failed"] == why
    assert recorded["no_such_benchmark"]["command"] == "python -m bench.no_such_benchmark"


def test_each_section_is_dated_by_its_own_run(results: Path) -> None:
    report.render({"job": "exited with status 1"})
    page = (results / "page.md").read_text()
    assert (
        "zip: *Measured 2026-01-02 03:04 UTC (1-minute load average 0.50 before, 0.60 after" in page
    )
    assert "`python -m bench.zip --sizes 16`" in page
    assert "job: *Measured date not recorded" in page  # never given another section's date
    assert "*Not measured in this run (`bench.job` exited with status 1).*" in page


def test_sections_without_saved_figures_keep_the_last_reports_text(results: Path) -> None:
    # A checkout that never ran zip or job (no zip.json, job.json): rerunning one benchmark
    # there must not blank the others' sections, nor date them by this run.
    template = results / "page.md.in"
    template.write_text(
        "${machine}\n## ZIP\n${zip_measured}\n## Job\n${job_measured}\n${job_table}\n"
    )
    (results / "page.md").write_text(
        "old machine\n## ZIP\nzip figures of May\n## Job\njob figures of May\n"
    )
    report.render({"job": "exited with status 1"})
    page = (results / "page.md").read_text()
    assert "## ZIP\nzip figures of May\n" in page
    assert "2026-01-02" not in page
    # A benchmark that failed in this run says so, rather than keep figures it did not remeasure.
    assert "job figures of May" not in page
    assert "*Not measured in this run (`bench.job` exited with status 1).*" in page
    assert "old machine" not in page
