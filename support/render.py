"""The renderer of every generated page under docs/: bench/templates/ given committed figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from support.stack import CHECKOUT


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.0f} ms" if value >= 100 else f"{value:.{1 if value >= 10 else 2}f} ms"


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


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
    "table": table,
    "f": format,
    "reject_key": lambda d, key: {k: v for k, v in d.items() if k != key},
}


def render(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


def write(pages: dict[Path, str]) -> None:
    for path, text in pages.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        print(f"wrote {path.relative_to(CHECKOUT) if path.is_relative_to(CHECKOUT) else path}")
