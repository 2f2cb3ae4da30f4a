"""`python -m runs.chaos ... --doc`: a run's output kept in runs/chaos/saved/, rendered into docs/."""

from __future__ import annotations

import functools
import io
import json
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from support import render as pages
from support.stack import CHECKOUT

DOC = CHECKOUT / "docs" / "reliability.md"
DOCS_RUNS = CHECKOUT / "docs" / "runs"
RUNS = CHECKOUT / "runs" / "chaos" / "saved"
MODES = {  # each run kept, and what it is
    "(full run)": "the full run, ZIPs in the BDR folder",
    "--ci": "the CI run, ZIPs in the BDR folder (on a tmpfs, with the full-disk fault)",
    "--ci --pooler pgbouncer": "the CI run through PgBouncer in transaction mode",
    "--ci --store": "the CI run, ZIPs in a SeaweedFS bucket (the store down, then frozen)",
}


# The test files whose counts reliability.md gives: counted by pytest at each render.
COUNTED = (
    "tests/api/host/test_access_matrix.py",
    "tests/api/web/test_hostile_input.py",
    "tests/api/web/test_fuzz.py",
)


@functools.cache  # once a process: the suite does not change while pages render
def collected() -> dict[str, int]:
    """Tests collected per COUNTED file, per function (`file::name`, each case) and under "all"."""
    pytest = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*pytest, *COUNTED], cwd=CHECKOUT, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"pytest could not collect {COUNTED}:\n{done.stdout}{done.stderr}")
    ids = [line.split("[", 1)[0] for line in done.stdout.splitlines() if "::" in line]
    per_file = Counter(i.split("::", 1)[0] for i in ids)
    return dict(per_file) | dict(Counter(ids)) | {"all": len(ids)}


class Transcript(io.StringIO):
    """Everything printed to stdout between `start()` and `stop()`, still printed."""

    out: TextIO

    @classmethod
    def start(cls) -> Transcript:
        t = cls()
        t.out, sys.stdout = sys.stdout, t
        return t

    def write(self, s: str) -> int:
        super().write(s)
        return self.out.write(s)

    def flush(self) -> None:
        self.out.flush()

    def stop(self) -> None:
        sys.stdout = self.out


def run_file(key: str, folder: Path = RUNS) -> Path:
    """`--ci --pooler pgbouncer` → ci-pooler-pgbouncer.json, `(full run)` → full-run.json."""
    return folder / (re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") + ".json")


def transcript_page(key: str) -> Path:
    return DOCS_RUNS / f"chaos-{run_file(key).stem}.md"


def runs(folder: Path = RUNS) -> list[dict[str, Any]]:
    out = []
    for key, what in MODES.items():
        path = run_file(key, folder)
        run = json.loads(path.read_text()) if path.exists() else None
        lines = run["output"].rstrip().splitlines()[::-1] if run else []
        out.append(
            {
                "key": key,
                "what": what,
                "run": run,
                "saved": path.name,
                "page": transcript_page(key).name,
                "flags": "" if key == "(full run)" else f" {key}",
                "verdict": next((x for x in lines if x.startswith("chaos: ")), None),
                "wall": next((x.split(";")[0] for x in lines if x.startswith("wall time")), None),
            }
        )
    return out


def renders(folder: Path = RUNS) -> dict[Path, str]:
    saved = runs(folder)
    out = {DOC: pages.render("reliability.md.j2", runs=saved, tests=collected())}
    for r in saved:
        out[transcript_page(r["key"])] = pages.render("chaos_run.md.j2", r=r)
    return out


def write(argv: list[str], output: str, code: int, folder: Path = RUNS) -> Path:
    # The section a run belongs to: its flags but --doc (and --keep).
    key = " ".join(a for a in argv if a not in ("--doc", "--keep")) or "(full run)"
    if key not in MODES:
        raise SystemExit(f"no page for a chaos run of {key!r}: add it to MODES in {__name__}")
    date = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    run = {"argv": argv, "date": date, **pages.revision(), "exit": code, "output": output}
    folder.mkdir(parents=True, exist_ok=True)
    run_file(key, folder).write_text(json.dumps(run, indent=1, ensure_ascii=False) + "\n")
    pages.write(renders(folder))
    return transcript_page(key)
