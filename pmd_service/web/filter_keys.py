"""The page's filter keys, generated from their one definition (features/posts/filters.py
FilterKeys) into `web/static/filter_keys.js`, which the page imports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec

from ..api.routing import query_fields, query_list, query_scalar
from ..core import generated
from ..features.posts.filters import FilterKeys

MODULE = Path(__file__).parent / "static" / "filter_keys.js"


def _kind(field: msgspec.inspect.Field) -> str:
    """`list`, `flag`, `number` or `text`: how the page holds the key's value."""
    if query_list(field.type) is not None:
        return "list"
    scalar = query_scalar(field.type)
    if isinstance(scalar, msgspec.inspect.BoolType):
        return "flag"
    return "number" if isinstance(scalar, msgspec.inspect.IntType) else "text"


def module_text() -> str:
    kinds = {f.encode_name: _kind(f) for f in query_fields(FilterKeys)}

    def names(kind: str | None = None) -> str:
        return json.dumps([k for k, v in kinds.items() if kind is None or v == kind])

    return f"""\
// Generated from pmd_service/features/posts/filters.py FilterKeys by
// `python -m pmd_service.web.filter_keys`: edit that, not this file.

// The keys of a filter: GET /api/pmd/posts' query parameters, an action's `filter`.
export const FILTER_KEYS = {names()};
// Keys that take several values (repeated in a query, a list in an action's filter).
export const LIST_KEYS = {names("list")};
// Keys whose value is true or false.
export const FLAG_KEYS = {names("flag")};
// Keys whose value is a whole number.
export const NUMBER_KEYS = {names("number")};
"""


def main(argv: list[str] | None = None) -> int:
    prog = "python -m pmd_service.web.filter_keys"
    return generated.main(prog, __doc__.split("\n\n")[0], MODULE, module_text, argv)


if __name__ == "__main__":
    sys.exit(main())
