"""The SQL the event kinds generate (a kind's `repeatable`: its trigger functions, from its
payload's one definition beside its item, e.g. features/bdr/schemas.py ItemRow), written into
`migrations/repeatable/`, where the migration runner re-creates the functions whenever a file
changes (core/migrate.py).

`python -m pmd_service.web.event_kinds` writes them after such a change (`--check`: whether they
are current); generated ahead, as the runner is core, which knows no feature.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .kinds import EventKinds


def generated(kinds: EventKinds) -> dict[str, str]:
    """File name under migrations/repeatable/ → its text."""
    return {k.repeatable[0]: k.repeatable[1](k) for k in kinds.all if k.repeatable is not None}


def stale(folder: Path, kinds: EventKinds) -> list[str]:
    """The generated files that are missing from `folder` or differ from their definition."""
    return [
        name
        for name, text in generated(kinds).items()
        if not (folder / name).is_file() or (folder / name).read_text("utf-8") != text
    ]


def main(kinds: EventKinds, prog: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    # The checkout's, the migrations' one source.
    folder = Path(__file__).resolve().parents[2] / "migrations" / "repeatable"
    if not folder.parent.is_dir():
        print(f"{folder.parent} is not there: run this from a checkout", file=sys.stderr)
        return 2
    names = stale(folder, kinds)
    if args.check:
        for name in names:
            print(f"{folder / name} is stale: run python -m pmd_service.web.event_kinds")
        return 1 if names else 0
    folder.mkdir(exist_ok=True)
    files = generated(kinds)
    for name in names:  # only the stale ones are written
        (folder / name).write_text(files[name], "utf-8")
    print("wrote " + ", ".join(names) if names else "every file is current")
    return 0
