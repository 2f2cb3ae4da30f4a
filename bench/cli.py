"""What every benchmark's command line shares: `--json FILE`, and its figures printed."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from pmd_service.core.settings import Settings
from support.stack import fresh_stack


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m bench.{name}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    return p


def save(path: Path | None, figures: Any) -> None:
    if path is not None:
        path.write_text(json.dumps(figures, indent=2, default=str))


def roomy(settings: Settings, **at_least: int) -> Settings:
    """`settings` with each limit named raised to at least its value: room for the run."""
    raised = {name: max(n, getattr(settings, name)) for name, n in at_least.items()}
    return msgspec.structs.replace(settings, **raised)


def in_stack(bench: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """`bench(settings, *args)` on a fresh stack of its own: its figures."""

    async def run() -> Any:
        async with fresh_stack() as settings:
            return await bench(settings, *args)

    return asyncio.run(run())


def show(title: str, figures: dict[str, Any]) -> None:
    """A part's figures on one line: nested ones by their path, a spread by its median."""
    print(f"{title}: {', '.join(_flat(figures))}", flush=True)


def _flat(figures: dict[str, Any], path: str = "") -> Iterator[str]:
    for k, v in figures.items():
        v = v["median"] if isinstance(v, dict) and "median" in v else v
        if isinstance(v, dict):
            yield from _flat(v, f"{path}{k}.")
        elif not isinstance(v, list):
            yield f"{path}{k} {v:.4g}" if isinstance(v, float) else f"{path}{k} {v}"
