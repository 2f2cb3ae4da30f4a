"""Every generated page under docs/, from the committed figures and chaos runs alone.

`--check` (in `make lint`) fails on a page that is not its render or names an unrecorded commit,
a commit a template writes by hand, or a figures file whose run commit git does not know first
or that was made after its run began."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.runner import BENCHMARKS, FIGURES, MACHINE, RETIRED, Saved, read_json, saved
from pmd_service.host.hostcheck import FITTED_COMMIT
from support import chaos_pages, render
from support.stack import CHECKOUT

TEMPLATES = CHECKOUT / "bench" / "templates"
# 7 to 40 hex digits with a digit and a letter: neither a number nor a word such as "defaced".
COMMIT = re.compile(
    r"(?<![0-9a-fA-F])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![0-9a-fA-F])"
)

REPORT = CHECKOUT / "docs" / "benchmarks.md"
DETAILS = CHECKOUT / "docs" / "benchmarks-details.md"
SCALING = CHECKOUT / "docs" / "scaling.md"


def sections(folder: Path = FIGURES) -> dict[str, Saved]:
    """Each benchmark's saved figures, through its module's `section` where it has one; a
    retired one's as saved."""
    out = {name: saved(name, folder) for name in RETIRED}
    for bench in BENCHMARKS:
        s = saved(bench.name, folder)
        make = getattr(importlib.import_module(bench.target), "section", None)
        if s.figures is not None and make is not None:
            s = replace(s, figures=make(s.figures))
        out[bench.name] = s
    return out


def benchmarks(folder: Path = FIGURES, template: str = "benchmarks.md.j2") -> str:
    return render.render(template, s=sections(folder), machine=read_json(folder / MACHINE.name))


def details(folder: Path = FIGURES) -> str:
    return benchmarks(folder, "benchmarks-details.md.j2")


def scaling(folder: Path = FIGURES) -> str:
    return render.render(
        "scaling.md.j2",
        sse_box=saved("sse_box", folder),
        upgrade=saved("upgrade", folder),
        cluster=saved("cluster", folder),  # the last saved run of the cluster's full form
        host_commit=FITTED_COMMIT,
    )


def renders(figures: Path = FIGURES, runs: Path = chaos_pages.RUNS) -> dict[Path, str]:
    pages = {REPORT: benchmarks(figures), DETAILS: details(figures), SCALING: scaling(figures)}
    return pages | chaos_pages.renders(runs)


def saved_outputs(figures: Path = FIGURES, runs: Path = chaos_pages.RUNS) -> list[Path]:
    """Every file a page renders from: the figures, the one-offs' records, the chaos runs."""
    return sorted([*figures.glob("*.json"), *runs.glob("*.json")])


def unrecorded(pages: dict[Path, str], outputs: list[Path]) -> list[str]:
    """Each commit a page names that neither a saved output (as a prefix) nor the code records."""
    known = {FITTED_COMMIT} | {c for p in outputs for c in COMMIT.findall(p.read_text())}
    prefixes = {c[:n] for c in known for n in range(7, len(c) + 1)}
    found = []
    for page, text in pages.items():
        for n, line in enumerate(text.splitlines(), 1):
            found += [f"{page.name}:{n}: {c}" for c in COMMIT.findall(line) if c not in prefixes]
    return found


def handwritten(templates: Path = TEMPLATES) -> list[str]:
    """Each commit a template writes by hand: a page renders its commits from saved outputs."""
    return [
        f"{t.name}:{n}: {c}"
        for t in sorted(templates.glob("*.j2"))
        for n, line in enumerate(t.read_text().splitlines(), 1)
        for c in COMMIT.findall(line)
    ]


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, check=False
    )


def known(commit: str) -> bool:
    return _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


def precedes(run: str, saved: str) -> bool:
    """Whether commit `run` is `saved` or one of its ancestors."""
    return _git("merge-base", "--is-ancestor", run, saved).returncode == 0


def committed_at(commit: str) -> datetime:
    """When `commit` was made (its committer's date: an amend or a rebase makes it anew)."""
    return datetime.fromisoformat(_git("show", "-s", "--format=%cI", commit).stdout.strip())


# A run's `date` as bench/runner.py writes it, and the dates of runs saved before it did.
RUN_DATES = (("%Y-%m-%d %H:%M UTC", timedelta(minutes=1)), ("%Y-%m-%d", timedelta(days=1)))


def made_after(commit: str, date: object) -> bool:
    """Whether `commit` was made after a run that began at `date` (to the date's grain)."""
    for form, grain in RUN_DATES:
        try:
            start = datetime.strptime(str(date), form).replace(tzinfo=UTC)
        except ValueError:
            continue
        return committed_at(commit) >= start + grain
    return False  # no date: nothing to compare


def saved_in(path: Path) -> str:
    """The commit whose tree holds `path` as it is: its last one, or HEAD if new or changed."""
    changed = _git("status", "--porcelain", "--", str(path)).stdout.strip()
    last = _git("log", "-1", "--format=%H", "--", str(path)).stdout.strip()
    return last if last and not changed else "HEAD"


def run_commits(figures: Path = FIGURES) -> list[str]:
    """Each figures file whose run names no commit, an unknown one, or one made after its run
    or its saving."""
    problems = []
    for path in sorted(figures.glob("*.json")):
        run = read_json(path).get("run")
        if not isinstance(run, dict):
            continue  # the machine's record, the one-offs': no run of their own
        commit = run.get("commit")
        if commit is None:
            problems.append(f"{path.name}: its run names no commit (save it with --save)")
        elif not known(commit):
            problems.append(f"{path.name}: its run's commit {commit[:9]} is not in this repository")
        elif made_after(commit, run.get("date")):
            problems.append(
                f"{path.name}: its run's commit {commit[:9]} was made after its run began "
                f"({run.get('date')}): the figures are not that commit's"
            )
        elif not precedes(commit, saved := saved_in(path)):
            problems.append(
                f"{path.name}: its run's commit {commit[:9]} comes after the commit that saved "
                f"it ({saved[:9]})"
            )
    return problems


def check(docs: Path = REPORT.parent) -> list[str]:
    """Every problem of the committed pages under `docs` (where they are: the renders' paths)."""
    rendered = {docs / p.relative_to(REPORT.parent): text for p, text in renders().items()}
    committed = {p: p.read_text() for p in rendered if p.exists()}
    problems = [
        f"{p.name}: not its render (python -m bench.run_all --report-only)"
        for p, text in rendered.items()
        if committed.get(p) != text
    ]
    problems += [
        f"names a commit no saved output records: {x}"
        for x in unrecorded(committed, saved_outputs())
    ]
    problems += [f"a commit written by hand in a template: {x}" for x in handwritten()]
    return problems + run_commits()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--check", action="store_true", help="check the pages, write nothing")
    if not parser.parse_args().check:
        render.write(renders())
        sys.exit(0)
    problems = check()
    print("\n".join(problems) or "the generated pages are their renders and name recorded commits")
    sys.exit(1 if problems else 0)
