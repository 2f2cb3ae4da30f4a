"""Statements composed from pieces with named parameters: `:name` in the text, `$n` on the wire."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# `:name`, but neither a cast's `::type` nor a colon inside a word.
_NAME = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_NUMBERED = re.compile(r"\$\d")


class Named(str):
    """A statement whose `:name` parameters are numbered in order of first use, as the text
    asyncpg sends; `bind` gives that text and a mapping's values in that order."""

    names: tuple[str, ...]
    text: str  # the same text as a plain str: asyncpg takes no subclass

    def __new__(cls, text: str) -> Named:
        if _NUMBERED.search(text):
            raise ValueError("a statement with named parameters numbers none of its own")
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        statement = super().__new__(cls, _NAME.sub(number, text))
        statement.names = tuple(names)
        statement.text = str.__str__(statement)
        return statement

    def bind(self, values: Mapping[str, object]) -> tuple[Any, ...]:
        """The text, then its parameters' values in its order (a mapping may hold more)."""
        missing = [name for name in self.names if name not in values]
        if missing:
            raise KeyError(f"the statement's parameters {', '.join(missing)} are not given")
        return (self.text, *(values[name] for name in self.names))
