"""What bench.scaling, bench.capacity, bench.store and bench.processes print as they go: a
part's figures on one line, nested ones by their path, a spread (median, min, max, runs) by its
median, lists left out. The pages rendered from the figures (docs/benchmarks.md,
docs/scaling.md) set them against their targets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def show(title: str, figures: dict[str, Any]) -> None:
    print(f"{title}: {', '.join(_flat(figures))}", flush=True)


def _flat(figures: dict[str, Any], path: str = "") -> Iterator[str]:
    for k, v in figures.items():
        if isinstance(v, dict) and "median" in v:
            v = v["median"]
        if isinstance(v, dict):
            yield from _flat(v, f"{path}{k}.")
        elif isinstance(v, float):
            yield f"{path}{k} {v:.4g}"
        elif not isinstance(v, list):
            yield f"{path}{k} {v}"
