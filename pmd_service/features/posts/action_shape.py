"""The shape of a bulk action: features/posts/actions.py holds one `BulkAction` per action, and the
batch statement (features/posts/batch_sql.py), the undo (features/posts/undo.py), the service (features/posts/batches.py),
the request's shapes (features/posts/schemas.py), the endpoints and the stream's event read it.

SQL parts are fragments of those statements' templates, with `{v0}` and `{v1}` for the action's
values ($n of the statement) and `p` the post row being written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from ...core.problems import ProblemError

# Host columns every bulk write and every undo bumps besides its own (features/posts/batch_sql.py says
# why), so no record names them.
BUMPED = ("updated_at", "metadata_modified_at")

# The batch statement's `refused` CTE unless a part names its own: the eligible posts the
# action may not apply to (`refuse`).
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
    """What undo needs of an action beyond the changed posts' ids: values written to them all
    (`wrote`: column -> SQL) and, per post in id order, prior values (`prior`: column -> an
    aggregate over `eligible e`), read from `eligible`'s `extra` columns where needed."""

    wrote: dict[str, str] = field(default_factory=dict)
    prior: dict[str, str] = field(default_factory=dict)
    extra: str = ""


@dataclass(frozen=True)
class Part:
    """An action's part of the batch statement, for one caller and one way of naming the
    posts: which posts are `eligible`, what it `assign`s, which rows it changes (`differs`),
    what must hold for the whole batch (`precondition`), which eligible posts it refuses
    (`refuse`, named by the `refused` CTE), what more it writes (`moderation`: CTEs), what the
    row reports (`columns`), what undo keeps (`history`), and whether it changes the others
    when it refuses some (`skip_refused`; otherwise a refusal refuses the batch)."""

    eligible: str
    assign: str
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
    """An action's part of the undo statement (features/posts/undo.py `_UNDO`): `holds`, the post
    still holds what it wrote; `assign`, the prior values; `allowed` false leaves a post,
    named with `refused`; `marks`: CTEs keeping moderators' marks; `clashes`: the posts whose
    artwork a live post holds (they refuse the whole undo)."""

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


# The first words of the answer's message ("Hidden" 3 post(s)), from the row and the values.
Said = Callable[[asyncpg.Record, tuple[object, ...]], str]


@dataclass(frozen=True, eq=False)
class BulkAction:
    """One bulk action, everything the service knows of it (records compare by identity).

    `name`: the request's `action`, what `bulk_actions.action` and the audit log record, and
    what the stream's `posts_changed` event says (`event`); `verb`: in the endpoint's summary;
    `past`: the answer's first words ("Hidden"); `already`: the posts it left as they were
    ("already hidden"); `undone`: what an undo names ("the hide of 3 posts"); `writes`: the
    host's `posts` columns it sets, beyond BUMPED (held equal to the `grants` command's UPDATE
    columns by tests/api/posts/test_action_records.py); `owner` and `moderator`: its statements and
    undo per caller; `fixed`: the values it sets itself (hide: true), else `values` reads
    them from the request; `own_endpoint`: not POST /api/pmd/action but an endpoint of its own
    (license: POST /api/pmd/license); `restores`: it acts on deleted posts (the restore window,
    a moderator's delete, the host's one live post per artwork); `unmet`: the refusal when its
    `precondition` fails or its value's row is gone meanwhile (a foreign key)."""

    name: str
    verb: str
    past: str | Said
    undone: str
    writes: tuple[str, ...]
    owner: Caller
    moderator: Caller
    already: str | None = None
    fixed: tuple[object, ...] = ()
    values: Callable[[Body], tuple[object, ...]] = no_values
    own_endpoint: bool = False
    restores: bool = False
    unmet: Callable[[tuple[object, ...]], ProblemError] | None = None

    @property
    def event(self) -> str:
        return self.name

    def caller(self, moderator: bool) -> Caller:
        return self.moderator if moderator else self.owner

    def said(self, row: asyncpg.Record, values: tuple[object, ...]) -> str:
        return self.past if isinstance(self.past, str) else self.past(row, values)
