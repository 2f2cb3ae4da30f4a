"""One command of `pmd-service`: the service's own in `__main__.py`, each feature's in its
manifest."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .settings import Settings

Argument = tuple[tuple[str, ...], dict[str, Any]]


class CliError(Exception):
    """Bad input or state: printed as one line, exit status 2."""


def arg(*names: str, **options: Any) -> Argument:
    """One argument of a command, as `add_argument` takes it."""
    return names, options


@dataclass(frozen=True)
class Command:
    """One command: `alone` runs before any setting is read, `run` once the database answers."""

    name: str
    help: str
    details: str = ""
    arguments: tuple[Argument, ...] = ()
    alone: Callable[[argparse.Namespace], int] | None = None
    run: Callable[[argparse.Namespace, Settings], int | None] | None = None
    reads_redis: bool = True  # False: REDIS_URL is not even read
    waits_for_redis: Callable[[argparse.Namespace], bool] = lambda _: False
    needs_secret: bool = False

    def __post_init__(self) -> None:
        assert (self.alone is None) != (self.run is None), f"{self.name}: `alone` or `run`"

    def description(self) -> str:
        more = f" {self.details}" if self.details else ""
        return self.help[:1].upper() + self.help[1:] + "." + more
