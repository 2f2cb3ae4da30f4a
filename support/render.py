"""The one renderer of every generated page under docs/: a Jinja2 template of bench/templates/
rendered from committed data alone (bench/figures/*.json, runs/chaos/saved/*.json). The
sentences are in the templates; Python gives them figures. bench/docs.py lists the pages, and
tests/tooling/test_docs_rendered.py holds each committed page to its render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from support import fmt

CHECKOUT = Path(__file__).resolve().parents[1]
TEMPLATES = CHECKOUT / "bench" / "templates"


def _table(rows: list[list[str]], header: list[str]) -> str:
    """`rows|table(header)`: a Markdown table."""
    return fmt.table(header, rows)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,  # a figure a template names and nobody gave fails
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 (Markdown from committed figures, never HTML)
    )
    env.globals |= {"inf": float("inf"), "nan": float("nan")}
    env.filters |= {
        "ms": fmt.ms,
        "verdict": fmt.verdict,
        "table": _table,
        "f": format,
        "reject_key": lambda d, key: {k: v for k, v in d.items() if k != key},
    }
    return env


ENV = _environment()


def render(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


def write(pages: dict[Path, str]) -> None:
    for path, text in pages.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        print(f"wrote {path.relative_to(CHECKOUT) if path.is_relative_to(CHECKOUT) else path}")
