"""The SQL that builds a JSON payload from a row, generated from the msgspec struct that reads
it: each field is the row's column of the same name, unless it declares `Sql` in its `Annotated`.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass

import msgspec

# Every expression names the row it reads by this alias (`r.status`).
ROW = "r"
# jsonb_build_object takes at most 100 arguments: larger objects are built in pieces, joined.
_PAIRS_A_CALL = 50
_COLUMN_RE = re.compile(rf"\b{ROW}\.([a-z_][a-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class Sql:
    """A payload field's expression, another for events, and further columns it depends on."""

    item: str
    event: str | None = None
    watch: tuple[str, ...] = ()


def _declared(struct: type[msgspec.Struct]) -> list[tuple[str, str, Sql | None]]:
    """(key, field name, its Sql or None) for each field, in the struct's order."""
    hints = typing.get_type_hints(struct, include_extras=True)
    out: list[tuple[str, str, Sql | None]] = []
    for name, key in zip(struct.__struct_fields__, struct.__struct_encode_fields__, strict=True):
        found = [m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, Sql)]
        out.append((key, name, found[0] if found else None))
    return out


def build_object(
    struct: type[msgspec.Struct], *, event: bool = False, alias: str = ROW, indent: str = "    "
) -> str:
    """`jsonb_build_object('key', expression, ...)` of every field of `struct`; `event`: an
    event's form."""
    pairs = []
    for key, name, sql in _declared(struct):
        if sql is None:
            pairs.append(f"'{key}', {alias}.{name}")
        else:
            pairs.append(f"'{key}', {sql.event if event and sql.event is not None else sql.item}")
    calls = [
        "jsonb_build_object(\n"
        + ",\n".join(indent + "    " + p for p in pairs[i : i + _PAIRS_A_CALL])
        + ")"
        for i in range(0, len(pairs), _PAIRS_A_CALL)
    ]
    return f"\n{indent}|| ".join(calls)


def watched(struct: type[msgspec.Struct]) -> list[str]:
    """The row's columns whose change changes the payload, in the struct's order."""
    seen: dict[str, None] = {}
    for _key, name, sql in _declared(struct):
        if sql is None:
            seen[name] = None
        else:
            read = _COLUMN_RE.findall(f"{sql.item} {sql.event or ''}")
            seen.update(dict.fromkeys([*read, *sql.watch]))
    return list(seen)


def columns(struct: type[msgspec.Struct]) -> str:
    """The select list of a struct whose every field is a column of the same name."""
    declared = _declared(struct)
    if any(sql is not None for _key, _name, sql in declared):
        raise ValueError(f"{struct.__name__} has fields that are not plain columns")
    return ", ".join(name for _key, name, _sql in declared)


def changed(columns: list[str], old: str, new: str, indent: str) -> str:
    """`old.c IS DISTINCT FROM new.c OR ...` over `columns`, one a line."""
    return f"\n{indent}OR ".join(f"{old}.{c} IS DISTINCT FROM {new}.{c}" for c in columns)
