"""Every figure names its run: a benchmark's run and a chaos run record the commit they ran on,
and `python -m bench.report --check` (in `make lint`) fails when a generated page names a
commit no saved output records, or when a template writes one by hand (issue 60, item 5)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from bench import report, runner
from support import chaos_pages
from tests.helpers import CHECKOUT


def head() -> str:
    return subprocess.run(
        ["git", "-C", str(CHECKOUT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_a_benchmarks_run_records_its_commit_and_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "SCRATCH", tmp_path / "scratch")
    stub = runner.Bench("stub", (), 120, module="tests.tooling.bench_stub")
    assert runner.run_one(stub, tmp_path) is None
    run = runner.saved("stub", tmp_path).run
    assert run is not None and run["commit"] == head() and isinstance(run["dirty"], bool)
    assert run["machine"]["nproc"] and run["command"] == "python -m tests.tooling.bench_stub"


def test_a_chaos_runs_output_records_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chaos_pages, "DOC", tmp_path / "reliability.md")
    monkeypatch.setattr(chaos_pages, "DOCS_RUNS", tmp_path / "runs")
    page = chaos_pages.write(["--ci", "--doc"], "chaos: OK: 0 violations\n", 0, tmp_path / "saved")
    assert f" at `{head()[:7]}`" in page.read_text()


def test_the_committed_pages_pass_the_check() -> None:
    assert report.check() == []


def edited(tmp_path: Path) -> tuple[Path, str, str]:
    """A copy of docs/ whose benchmarks-details.md names another commit than its first one."""
    shutil.copytree(report.REPORT.parent, tmp_path / "docs")
    page = tmp_path / "docs" / report.DETAILS.name
    text = page.read_text()
    match = report.COMMIT.search(text)
    assert match is not None, "the page names no commit"
    real = match.group()
    last = real[-1]  # swapped for another of its kind: a commit keeps a digit and a letter
    forged = real[:-1] + (
        ("0" if last != "0" else "1") if last.isdigit() else ("a" if last != "a" else "b")
    )
    page.write_text(text.replace(real, forged, 1))
    return tmp_path / "docs", real, forged


def test_a_hand_edited_commit_in_a_page_fails(tmp_path: Path) -> None:
    docs, real, forged = edited(tmp_path)
    problems = report.check(docs)
    assert (
        f"{report.DETAILS.name}: not its render (python -m bench.run_all --report-only)" in problems
    )
    named = [p for p in problems if p.startswith("names a commit no saved output records")]
    assert len(named) == 1 and named[0].endswith(f": {forged}") and report.DETAILS.name in named[0]
    page = docs / report.DETAILS.name
    assert (
        report.unrecorded({page: page.read_text().replace(forged, real)}, report.saved_outputs())
        == []
    )


def test_a_commit_written_in_a_template_fails(tmp_path: Path) -> None:
    shutil.copytree(report.TEMPLATES, tmp_path / "templates")
    template = tmp_path / "templates" / "scaling.md.j2"
    template.write_text(template.read_text() + "\n*One-off, at `4b825dc`.*\n")
    assert report.handwritten(tmp_path / "templates") == [
        f"scaling.md.j2:{len(template.read_text().splitlines())}: 4b825dc"
    ]
    assert report.handwritten() == []


def test_a_run_commit_git_does_not_know_or_that_came_later_fails(tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    figures.mkdir()

    def saved(name: str, run: dict[str, object]) -> None:
        (figures / f"{name}.json").write_text(json.dumps({"run": run, "figures": {}}))

    saved("ran_here", {"commit": head()})
    saved("unrun", {"date": "2026-11-26"})
    saved("forged", {"commit": "f" * 40})
    problems = report.run_commits(figures)
    assert problems == [
        "forged.json: its run's commit fffffffff is not in this repository",
        "unrun.json: its run names no commit (save it with --save)",
    ]
    # A file saved in a commit before its run's: the run came after it.
    assert report.precedes("HEAD~1", "HEAD") and not report.precedes("HEAD", "HEAD~1")


def test_a_run_commit_made_after_its_run_fails(tmp_path: Path) -> None:
    """A figure whose run names a commit made after the run began (an amend, a commit of the
    run's own uncommitted changes) is not that commit's figure (issue 75, item 8)."""
    figures = tmp_path / "figures"
    figures.mkdir()
    commit = head()
    made = report.committed_at(commit).astimezone(UTC)

    def saved(name: str, date: str) -> None:
        run = {"commit": commit, "date": date}
        (figures / f"{name}.json").write_text(json.dumps({"run": run, "figures": {}}))

    saved("same_minute", made.strftime("%Y-%m-%d %H:%M UTC"))
    saved("later", (made + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M UTC"))
    assert report.run_commits(figures) == []
    saved("a_minute_before", (made - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M UTC"))
    saved("the_day_before", (made - timedelta(days=1)).strftime("%Y-%m-%d"))
    refused = report.run_commits(figures)
    assert [p.split(":")[0] for p in refused] == ["a_minute_before.json", "the_day_before.json"]
    assert all(commit[:9] in p for p in refused)
