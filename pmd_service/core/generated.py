"""A generated file's command: writes the file, or with `--check` says whether it is current."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def main(
    prog: str, description: str, path: Path, text: Callable[[], str], argv: list[str] | None
) -> int:
    """`prog [--check]`: 0 once `path` holds `text()`; with --check, 1 if it does not."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    wanted = text()
    current = path.is_file() and path.read_text("utf-8") == wanted
    if args.check:
        if not current:
            print(f"{path} is stale: run {prog}")
        return 0 if current else 1
    if not current:
        path.write_text(wanted, "utf-8")
    print(f"wrote {path}" if not current else f"{path} is current")
    return 0
