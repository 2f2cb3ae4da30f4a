"""Every setting a benchmark changes from what ships is kept in its figures file and shown
beside its figures; a run that did not record them is shown as such (issue 75, item 8)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import report, runner

LIFTED = {
    "BULK_CHANGED_POSTS_SITE_PER_MINUTE": {"ran": [2_000_000], "ships": 160_000},
    "SSE_MAX_PER_USER": {"ran": [1000], "ships": 10},
}


def test_a_runs_changed_settings_are_kept_with_its_figures(figures: Path) -> None:
    lifting = runner.Bench("lifting", (), 120, module="tests.tooling.bench_lifting")
    assert runner.run_one(lifting, figures) is None
    kept = runner.saved("lifting", figures).settings
    assert kept is not None and kept.items() >= LIFTED.items()
    # A run whose benchmark records nothing has its settings unrecorded, not as shipped.
    stub = runner.Bench("stub", (), 120, module="tests.tooling.bench_stub")
    assert runner.run_one(stub, figures) is None
    assert runner.saved("stub", figures).settings is None


def policies(figures: Path, **settings: object) -> str:
    """The saved policies figures, with `settings` as their record (none given: unrecorded):
    the command of their run."""
    saved = json.loads((runner.FIGURES / "policies.json").read_text())
    saved.pop("settings", None)
    (figures / "policies.json").write_text(json.dumps(saved | settings))
    return str(saved["run"]["command"])


def lines_of(page: str, command: str) -> list[str]:
    """The targets table's rows and the section's measured line of `command`'s run."""
    return [
        line
        for line in page.splitlines()
        if line.endswith(f"| `{command}` |")
        or (line.startswith("*Measured") and f"`{command}`" in line)
    ]


def test_the_pages_show_each_changed_setting_beside_its_figures(figures: Path) -> None:
    command = policies(figures, settings=LIFTED)
    for page in (report.benchmarks(figures), report.details(figures)):
        beside = lines_of(page, command)
        assert beside
        for line in beside:
            assert "BULK_CHANGED_POSTS_SITE_PER_MINUTE" in line and "2,000,000" in line
            assert "SSE_MAX_PER_USER" in line and "160,000" in line


def test_an_unrecorded_run_is_not_shown_as_shipped(figures: Path) -> None:
    command = policies(figures)
    unrecorded = report.benchmarks(figures), report.details(figures)
    policies(figures, settings={})
    shipped = report.benchmarks(figures), report.details(figures)
    for before, after in zip(unrecorded, shipped, strict=True):
        assert lines_of(before, command) != lines_of(after, command)
