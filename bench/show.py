"""A part's figures on one line as a benchmark prints them: nested ones by their path, a spread
(median, min, max, runs) by its median, lists left out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def show(title: str, figures: dict[str, Any]) -> None:
    print(f"{title}: {', '.join(_flat(figures))}", flush=True)


def _flat(figures: dict[str, Any], path: str = "") -> Iterator[str]:
    for k, v in figures.items():
        v = v["median"] if isinstance(v, dict) and "median" in v else v
        if isinstance(v, dict):
            yield from _flat(v, f"{path}{k}.")
        elif not isinstance(v, list):
            yield f"{path}{k} {v:.4g}" if isinstance(v, float) else f"{path}{k} {v}"
