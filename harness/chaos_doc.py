"""`python -m harness.chaos ... --doc`: the run's own output, dated and with its command, into
its marked section of docs/reliability.md, so the page shows what a run printed and nobody
copies figures by hand."""

from __future__ import annotations

import io
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from harness.stack import CHECKOUT

DOC = CHECKOUT / "docs" / "reliability.md"


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


def markers(key: str) -> tuple[str, str]:
    return f"<!-- chaos run: {key} -->", f"<!-- /chaos run: {key} -->"


def section(argv: list[str], output: str, code: int, now: datetime) -> str:
    command = " ".join([".venv/bin/python -m harness.chaos", *argv])
    return (
        f"Written by `{command}` on {now:%Y-%m-%d %H:%M} UTC (exit {code}):\n\n"
        f"```\n{output.rstrip()}\n```"
    )


def replace(doc: str, key: str, body: str) -> str:
    begin, end = markers(key)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(doc):
        raise SystemExit(f"no section marked {begin} ... {end} in {DOC}")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", doc, count=1)


def write(argv: list[str], output: str, code: int, doc: Path = DOC) -> Path:
    body = section(argv, output, code, datetime.now(UTC))
    doc.write_text(replace(doc.read_text(), mode(argv), body))
    return doc
