"""The SQL of the stream's event shapes (`bdr_update`, `export_update`), generated from their one
definition each, beside its item (bdr/schemas.py ItemRow, exports/schemas.py Payload), into
`migrations/repeatable/`, where the migration runner re-creates the functions whenever a file
changes (core/migrate.py).

`python -m pmd_service.sse.shapes` (from a checkout) writes the files after such a change;
`--check` only says whether they are current (tests/unit/test_event_shapes.py checks too).
The files are generated ahead rather than by the runner itself because the runner is core,
which knows no feature: every caller of `apply_migrations` (the tests', the benchmarks',
the runs') gets them as it gets the migrations.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..bdr import event_sql as bdr_events
from ..exports import event_sql as export_events

# File name under migrations/repeatable/ → what generates it.
GENERATED: dict[str, Callable[[], str]] = {
    "bdr_events.sql": bdr_events.repeatable_sql,
    "export_events.sql": export_events.repeatable_sql,
}


def checkout_folder() -> Path:
    """The checkout's `migrations/repeatable/` (the migrations' one source)."""
    return Path(__file__).resolve().parents[2] / "migrations" / "repeatable"


def stale(folder: Path) -> list[str]:
    """The generated files that are missing from `folder` or differ from their definition."""
    return [
        name
        for name, generate in GENERATED.items()
        if not (folder / name).is_file() or (folder / name).read_text("utf-8") != generate()
    ]


def write(folder: Path) -> list[str]:
    """Writes the files that are stale; returns their names."""
    changed = stale(folder)
    for name in changed:
        (folder / name).write_text(GENERATED[name](), "utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pmd_service.sse.shapes", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    folder = checkout_folder()
    if not folder.parent.is_dir():
        print(f"{folder.parent} is not there: run this from a checkout", file=sys.stderr)
        return 2
    if args.check:
        names = stale(folder)
        for name in names:
            print(f"{folder / name} is stale: run python -m pmd_service.sse.shapes")
        return 1 if names else 0
    folder.mkdir(exist_ok=True)
    names = write(folder)
    print("wrote " + ", ".join(names) if names else "every file is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
