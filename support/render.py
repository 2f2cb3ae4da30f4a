"""The renderer of every generated page under docs/: bench/templates/ given committed figures."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jinja2

from support.stack import CHECKOUT


def revision() -> dict[str, Any]:
    """HEAD's commit for a saved output to name; `dirty` when code besides outputs differs."""
    git = ["git", "-C", str(CHECKOUT)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no", "--", ".", *UNCOUNTED],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {"commit": commit.stdout.strip(), "dirty": bool(changed.strip())}


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.0f} ms" if value >= 100 else f"{value:.{1 if value >= 10 else 2}f} ms"


# Figures no script writes any more, each with the date, command and commit its record names.
ONE_OFFS = CHECKOUT / "bench" / "figures" / "one_offs.json"
# What a run writes, so never what makes its commit dirty.
UNCOUNTED = (":!bench/figures", ":!runs/chaos/saved", ":!docs")
ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(CHECKOUT / "bench" / "templates"),
    undefined=jinja2.StrictUndefined,  # a figure a template names and nobody gave fails
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,  # noqa: S701 (Markdown from committed figures, never HTML)
)
ENV.globals |= {"inf": float("inf"), "nan": float("nan")}
ENV.filters |= {
    "ms": ms,
    "verdict": lambda ok: "met" if ok else "missed",
    "f": format,
    "reject_key": lambda d, key: {k: v for k, v in d.items() if k != key},
}


def render(template: str, **context: Any) -> str:
    # Read anew at each render: imported macros see globals, not context.
    ENV.globals["one_offs"] = (
        json.loads(ONE_OFFS.read_text())["one_offs"] if ONE_OFFS.exists() else {}
    )
    return ENV.get_template(template).render(**context)


def write(pages: dict[Path, str]) -> None:
    for path, text in pages.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        print(f"wrote {path.relative_to(CHECKOUT) if path.is_relative_to(CHECKOUT) else path}")
