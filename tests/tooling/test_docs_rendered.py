"""Every generated page under docs/ is a render of its template (bench/templates/) and the
committed data (bench/figures/, runs/chaos/saved/), and a hand edit of one fails here. A
benchmark's section is dated by its own run, a failed rerun keeps the figures before it and
says so, and a section or part without figures says "not measured yet" and keeps nothing."""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench import report, runner
from bench.run_all import BENCHMARKS
from support import chaos_pages as chaos_doc
from tests.helpers import run_python

OLD = {
    "date": "2026-01-02 03:04 UTC",
    "load_start": "0.50",
    "load_end": "0.60",
    "command": "python -m bench.build",
    "seconds": 42,
}
# The committed figures of two sections, whatever they measured.
BUILD, STORE = (runner.saved(name).figures for name in ("build", "store"))
LEVEL = {
    "streams": 50000,
    "processes": 4,
    "pool_max": 10,
    "held": 49000,
    "rss_mb": 600.0,
    "kb_per_stream_rss": 11.5,
    "event": {"p50_ms": 4.0},
    "event_p99_ms": 31.0,
    "burst": {"p50_ms": 300.0, "p99_ms": 600.0, "update_ms": 12.0},
    "burst_all_s": 1.25,
}
REDO = (
    "it is generated: edit its template (bench/templates/) or the code that gives it its "
    "figures, then render it again with `python -m bench.run_all --report-only`"
)


def save(folder: Path, name: str, data: dict[str, Any]) -> None:
    (folder / f"{name}.json").write_text(json.dumps(data))


def stale(pages: dict[Path, str]) -> list[str]:
    """The pages that differ from their render, each with the first lines of the difference."""
    found = []
    for page, text in pages.items():
        committed = page.read_text() if page.exists() else ""
        if committed != text:
            diff = difflib.unified_diff(
                text.splitlines(), committed.splitlines(), "render", page.name, lineterm="", n=0
            )
            found.append(f"{page.name}: {REDO}\n" + "\n".join(list(diff)[2:22]))
    return found


def test_the_docs_are_renders_of_their_templates_and_the_committed_data() -> None:
    problems = stale(report.renders())
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize(
    ("page", "before", "after"),
    [
        (
            "benchmarks.md",
            "| one LISTEN connection per process | ",
            "| one LISTEN connection per process | 1",
        ),
        ("benchmarks-details.md", "| seed algorithm | ", "| seed algorithm | 1"),
        ("scaling.md", "gave 0.69× the rate of one", "gave 0.96× the rate of one"),
        ("reliability.md", "wall time ", "wall time 1"),  # a run's time, whatever it was
        ("runs/chaos-ci.md", "chaos: OK: 0 violations", "chaos: OK: 1 violations"),
    ],
)
def test_a_hand_edit_of_a_generated_page_fails(
    page: str, before: str, after: str, tmp_path: Path
) -> None:
    pages = report.renders()
    docs_dir = report.REPORT.parent
    copied = {tmp_path / path.relative_to(docs_dir): text for path, text in pages.items()}
    shutil.copytree(docs_dir, tmp_path, dirs_exist_ok=True)
    text = (tmp_path / page).read_text()
    assert before in text
    (tmp_path / page).write_text(text.replace(before, after, 1))
    assert [p.split(":", 1)[0] for p in stale(copied)] == [Path(page).name]


def rows_of(page: str, command: str) -> list[str]:
    """The targets table's rows measured by `command`."""
    return [line for line in page.splitlines() if line.endswith(f"| `{command}` |")]


def test_each_section_is_dated_by_its_own_run(figures: Path) -> None:
    save(figures, "build", {"run": OLD, "figures": BUILD, "settings": {}})
    before = {"run": {"before": "2025-12-31 00:00 UTC"}, "figures": STORE, "settings": {}}
    save(figures, "store", before)
    page = report.benchmarks(figures)
    build = rows_of(page, "python -m bench.build")
    assert len(build) >= 8 and all("| 2026-01-02 03:04 UTC |" in r for r in build)
    assert page.count("2026-01-02") == len(build)  # never given another benchmark's date
    store = rows_of(page, "python -m bench.run_all --only store")
    assert store and all("| on or before 2025-12-31 00:00 UTC |" in r for r in store)
    details = report.details(figures)
    assert (
        "## ZIP build — `python -m bench.build`\n\n*Measured 2026-01-02 03:04 UTC (load 0.50 → "
        "0.60, 42 s): `python -m bench.build`.*" in details
    )
    assert "| 128 artworks | claim → ready |" in details  # the whole job, in the same section
    assert "*Measured on or before 2025-12-31 00:00 UTC (figures saved before each" in details
    assert details.count("2026-01-02") == 1


def test_a_section_without_figures_says_so_and_keeps_nothing(figures: Path) -> None:
    save(figures, "build", {"run": OLD, "figures": BUILD})
    page, details = report.benchmarks(figures), report.details(figures)
    not_yet = (
        "*Not measured yet: no figures in `bench/figures/store.json` (`python -m bench.run_all "
        "--only store` measures them).*"
    )
    assert f"| object storage | {not_yet} | | | |" in page
    assert "## Object storage — `python -m bench.store`\n\n" + not_yet + "\n\n## " in details
    assert "ZIP build into SeaweedFS" not in page  # no row of the store's
    assert "| stalled readers | server RSS |" not in details  # nothing of the store's block
    assert rows_of(page, "python -m bench.build")  # the benchmark with figures is rendered
    assert "| 128 artworks | claim → ready |" in details
    assert "Machine: not recorded" in page


def test_a_failed_first_run_is_said(figures: Path) -> None:
    why = runner.run_one(runner.Bench("store", (), 60, module="no_such_benchmark"), figures)
    assert why is not None and "status 1" in why
    for page in (report.benchmarks(figures), report.details(figures)):
        assert "*Not measured yet: its last run, " in page
        assert "failed (exited with status 1): `python -m bench.no_such_benchmark`.*" in page


def test_a_failed_rerun_keeps_the_figures_before_and_says_so(figures: Path) -> None:
    save(figures, "build", {"run": OLD, "figures": BUILD})
    save(figures, "store", {"run": OLD | {"command": "python -m bench.store"}, "figures": STORE})
    before = (figures / "build.json").read_text()
    why = runner.run_one(runner.Bench("store", (), 60, module="no_such_benchmark"), figures)
    assert why is not None and "status 1" in why
    kept = runner.saved("store", figures)
    assert kept.figures == STORE and kept.run is not None and kept.run["date"] == OLD["date"]
    assert kept.failed is not None and kept.failed["why"] == why
    assert (figures / "build.json").read_text() == before  # no other benchmark's file
    store = rows_of(report.benchmarks(figures), "python -m bench.store")
    assert store and all(f"failed ({why}): the run before's figures |" in r for r in store)
    details = report.details(figures)
    assert f"failed ({why}): these are the figures of the run before.*" in details
    assert "| stalled readers | server RSS |" in details


def test_a_scaling_page_without_figures_says_so_and_keeps_its_one_offs(figures: Path) -> None:
    page = report.scaling(figures)
    assert "Streams against processes: not measured yet (`python -m bench.sse --box`)." in page
    assert "*One-off, 2026-11-23 21:15 UTC" in page  # the cluster's, dated in the template
    assert "| 1× | 200 |" in page  # the model's rows, one-offs too


def test_streams_measured_are_tabled(figures: Path) -> None:
    save(figures, "sse_box", {"run": OLD, "figures": {"levels": [LEVEL]}})
    page = report.scaling(figures)
    row = "| 50,000 | 4 (10) | 49,000 | 600 MB | 11.5 KB | 4.0 ms | 31.0 ms | 300 ms | 600 ms"
    assert row + " | 1.25 s | 12 ms |" in page


def test_a_chaos_run_is_saved_and_rendered_into_its_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chaos_doc, "DOC", tmp_path / "reliability.md")
    monkeypatch.setattr(chaos_doc, "DOCS_RUNS", tmp_path / "runs")
    page = chaos_doc.write(
        ["--ci", "--doc"], "chaos: OK: 0 violations\nwall time 9 s\n", 0, tmp_path / "saved"
    )
    saved = json.loads((tmp_path / "saved" / "ci.json").read_text())
    assert saved["argv"] == ["--ci", "--doc"] and saved["exit"] == 0
    assert page == tmp_path / "runs" / "chaos-ci.md"
    dirty = " with uncommitted changes" if saved["dirty"] else ""
    assert (
        f"Written by `.venv/bin/python -m runs.chaos --ci --doc` on {saved['date']} UTC at "
        f"`{saved['commit'][:7]}`{dirty} (exit 0):\n\n```\nchaos: OK: 0 violations\nwall time 9 s\n```\n"
    ) in page.read_text()
    summary = (tmp_path / "reliability.md").read_text()
    assert (
        f"| `--ci` | the CI run, ZIPs in the BDR folder (on a tmpfs, with the full-disk fault) | `chaos: OK: 0 violations`, wall time 9 s ({saved['date']} UTC at `{saved['commit'][:7]}`{dirty}) |"
        in summary
    )
    assert "not run yet (`.venv/bin/python -m runs.chaos --ci --store --doc`)" in summary
    with pytest.raises(SystemExit, match="no page for a chaos run"):
        chaos_doc.write(["--ci", "--made-up", "--doc"], "", 0, tmp_path / "saved")


def test_run_alls_help_says_how_long_and_what_it_rewrites() -> None:
    """`python -m bench.run_all --help` names every benchmark with its time bound, the bound of
    them all, and the committed files a run rewrites (issue 33)."""
    done = run_python("-m", "bench.run_all", "--help", check=True)
    text = done.stdout
    total = sum(b.limit_s for b in BENCHMARKS) / 3600
    assert f"all of them, at most {total:.1f} h" in text
    for b in BENCHMARKS:
        assert f"  {b.name:<14} bound {b.limit_s // 60:>3} min, last run " in text, b.name
    rewrites = text[text.index("Files it rewrites (committed):") :]
    for path in (
        "bench/figures/<name>.json",
        "docs/benchmarks.md",
        "docs/benchmarks-details.md",
        "docs/scaling.md",
    ):
        assert path in rewrites, path
