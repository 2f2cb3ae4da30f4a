"""What every benchmark's command line shares: `python -m bench.<name> [...] --json FILE`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The benchmark's parser, with `--json` (where bench.run_all collects the figures)."""
    p = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    return p


def save(path: Path | None, figures: Any) -> None:
    if path is not None:
        path.write_text(json.dumps(figures, indent=2, default=str))
