"""`python -m harness.chaos ... --doc`: the run's own output, dated and with its command, kept in
harness/chaos_runs/<mode>.json (committed) and rendered from there into its marked section of
docs/reliability.md, so the page shows what a run printed, nobody copies figures by hand, and a
test (tests/test_bench_report.py) holds every marked section to the run saved for it."""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from support.stack import CHECKOUT

DOC = CHECKOUT / "docs" / "reliability.md"
RUNS = CHECKOUT / "harness" / "chaos_runs"
_SECTION = re.compile(r"(<!-- chaos run: (.*?) -->\n)(.*?)(\n<!-- /chaos run: \2 -->)", re.S)


class Transcript(io.TextIOBase):
    """Everything printed to stdout while it runs, still printed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.buffer_ = io.StringIO()

    @classmethod
    def start(cls) -> Transcript:
        t = cls(sys.stdout)
        sys.stdout = t
        return t

    def write(self, text: str) -> int:
        self.buffer_.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()

    def stop(self) -> None:
        sys.stdout = self.out

    @property
    def text(self) -> str:
        return self.buffer_.getvalue()


def mode(argv: list[str]) -> str:
    """The section a run belongs to: its flags but --doc (and --keep), in a fixed order."""
    flags = [a for a in argv if a not in ("--doc", "--keep")]
    return " ".join(flags) or "(full run)"


def run_file(key: str, folder: Path = RUNS) -> Path:
    """`--ci --pooler pgbouncer` → ci-pooler-pgbouncer.json, `(full run)` → full-run.json."""
    return folder / (re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") + ".json")


def section(run: dict[str, Any]) -> str:
    command = " ".join([".venv/bin/python -m harness.chaos", *run["argv"]])
    return (
        f"Written by `{command}` on {run['date']} UTC (exit {run['exit']}):\n\n"
        f"```\n{run['output'].rstrip()}\n```"
    )


def render(doc: str, folder: Path = RUNS) -> str:
    """`doc` with every marked section holding the run saved for it, or saying there is none."""

    def one(m: re.Match[str]) -> str:
        path = run_file(m[2], folder)
        if path.exists():
            body = section(json.loads(path.read_text()))
        else:
            flags = "" if m[2] == "(full run)" else f" {m[2]}"
            body = (
                f"Not run yet: no saved output (`harness/chaos_runs/{path.name}`); "
                f"`.venv/bin/python -m harness.chaos{flags} --doc` runs it and writes it here."
            )
        return f"{m[1]}{body}{m[4]}"

    return _SECTION.sub(one, doc)


def write(argv: list[str], output: str, code: int, doc: Path = DOC, folder: Path = RUNS) -> Path:
    key = mode(argv)
    if f"<!-- chaos run: {key} -->" not in doc.read_text():
        raise SystemExit(f"no section marked <!-- chaos run: {key} --> in {doc}")
    run = {"argv": argv, "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M}", "exit": code,
           "output": output}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    run_file(key, folder).write_text(json.dumps(run, indent=1, ensure_ascii=False) + "\n")
    doc.write_text(render(doc.read_text(), folder))
    return doc
