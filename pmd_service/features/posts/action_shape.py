"""The shape of a bulk action: SQL fragments with `{v0}`, `{v1}` its values and `p` the post."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from ...core.problems import ProblemError

# Host columns every bulk write and every undo bumps besides its own (batch_sql.py says why).
BUMPED = ("updated_at", "metadata_modified_at")

# The batch statement's `refused` CTE unless a part names its own.
REFUSED = """refused AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{}') AS ids FROM eligible WHERE refused
)"""
# The undo's `clashes` CTE unless a part names its own: none.
NO_CLASHES = (
    "SELECT NULL::int AS id, NULL::text AS public_sqid, NULL::int AS held_id,"
    " NULL::text AS held_sqid WHERE false"
)


@dataclass(frozen=True)
class History:
    """What undo needs beyond the posts' ids: values written to all, and prior values per post."""

    wrote: dict[str, str] = field(default_factory=dict)
    prior: dict[str, str] = field(default_factory=dict)
    extra: str = ""


@dataclass(frozen=True)
class Part:
    """An action's part of the batch statement, for one caller and one way of naming posts."""

    assign: str
    eligible: str = "NOT p.deleted_by_user"  # the posts it may act on: live ones unless it says
    differs: str = "true"
    precondition: str = "true"
    refuse: str = "false"
    refused: str = REFUSED
    moderation: str = ""
    columns: str = ""
    history: History = History()
    skip_refused: bool = False


@dataclass(frozen=True)
class Undo:
    """An action's part of the undo statement: `holds`, the post still holds what it wrote."""

    holds: str
    assign: str
    allowed: str = "true"
    refused: str = ""
    marks: str = ""
    clashes: str = NO_CLASHES


# The 400 (or 409) naming the refused posts, from their ids and the statement's row.
Refusal = Callable[[list[int], asyncpg.Record], ProblemError]


@dataclass(frozen=True)
class Caller:
    """What an action does as one caller: the owner, or a moderator on the owner's posts."""

    by_ids: Part
    by_filter: Part
    undo: Undo
    refusal: Refusal | None = None

    @classmethod
    def alike(cls, part: Part, undo: Undo, refusal: Refusal | None = None) -> Caller:
        """The same part by ids and by filter."""
        return cls(part, part, undo, refusal)

    def part(self, by_filter: bool) -> Part:
        return self.by_filter if by_filter else self.by_ids


class Body(Protocol):
    """The fields of POST /api/pmd/action's body an action's values come from."""

    @property
    def add(self) -> list[str]: ...
    @property
    def remove(self) -> list[str]: ...
    @property
    def value(self) -> bool | None: ...


def no_values(body: Body) -> tuple[object, ...]:
    return ()


@dataclass(frozen=True)
class PageWords:
    """The dashboard page's words beyond `verb` and `undone` ("Hiding" 3 posts…, 3 posts
    "hidden"; 2 "already hidden", "Hid" 3 posts), which `web/action_words.py` writes into it."""

    doing: str
    did: str
    done: str | None = None  # None: `past` in lower case
    already: str | None = None  # None: the action's `already`


@dataclass(frozen=True, eq=False)
class BulkAction:
    """One bulk action, compared by identity; `writes`: the host columns it sets beyond BUMPED."""

    name: str
    verb: str
    # The first words of the answer's message ("Hidden" 3 post(s)), or made of the row and values.
    past: str | Callable[[asyncpg.Record, tuple[object, ...]], str]
    undone: str
    writes: tuple[str, ...]
    owner: Caller
    moderator: Caller
    page: PageWords
    already: str | None = None
    fixed: tuple[object, ...] = ()
    values: Callable[[Body], tuple[object, ...]] = no_values
    own_endpoint: bool = False
    restores: bool = False
    unmet: Callable[[tuple[object, ...]], ProblemError] | None = None

    def caller(self, moderator: bool) -> Caller:
        return self.moderator if moderator else self.owner

    def said(self, row: asyncpg.Record, values: tuple[object, ...]) -> str:
        return self.past if isinstance(self.past, str) else self.past(row, values)
