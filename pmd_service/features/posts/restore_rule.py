"""The host's restore rule: a deleted post whose artwork a live post holds is not restored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import asyncpg
import msgspec

from ...core.codes import Code
from ...core.problems import FieldError, ProblemError, conflict

if TYPE_CHECKING:
    from ...core.db import Conn

T = TypeVar("T")

# The host's one live post per artwork: a restore that would break it raced an upload.
HASH_INDEX = "uq_posts_hash_active"
# Runs of a restore (or an undo) that raced an upload of one of its artworks.
_TRIES = 3


async def unless_raced(
    pool: asyncpg.Pool, attempt: Callable[[Conn], Awaitable[T]], raced: str
) -> T:
    """`attempt` in a transaction, retried while an upload races it, then a 409 saying `raced`."""
    for _ in range(_TRIES):
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await attempt(conn)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != HASH_INDEX:
                raise
    raise conflict(raced, slug="artwork-reuploaded", code=Code.RESTORE_INTERRUPTED)


class HeldBy(msgspec.Struct):
    post_id: int | None  # None in a statement's row: another user's post, never named
    public_sqid: str | None
    live: bool


class Clash(msgspec.Struct):
    """One refused post; `held_by` null: another user's live post holds its artwork."""

    post_id: int
    public_sqid: str | None
    held_by: HeldBy | None


def clashes_of(rows: object) -> list[Clash]:
    """The clashes of a statement's `clashes` column (a JSON list), another user's post unnamed."""
    clashes = msgspec.convert(rows or [], list[Clash])
    for c in clashes:
        if c.held_by is not None and c.held_by.post_id is None:
            c.held_by = None
    return clashes


def artwork_held(rows: object) -> ProblemError:
    """409 naming each deleted post whose artwork another post holds (or would hold)."""
    clashes = clashes_of(rows)
    parts = []
    for c in clashes:
        if c.held_by is None:
            parts.append(f"post {c.post_id}: the same artwork is now another post")
        elif c.held_by.live:
            parts.append(
                f"post {c.post_id} was uploaded again as post {c.held_by.post_id} "
                f"({c.held_by.public_sqid})"
            )
        else:
            parts.append(f"post {c.post_id} is the same artwork as post {c.held_by.post_id}")
    fix = []
    if any(c.held_by is None or c.held_by.live for c in clashes):
        fix.append("a post whose artwork lives on as another post cannot be restored")
    if any(c.held_by is not None and not c.held_by.live for c in clashes):
        fix.append("of posts of the same artwork only one can be restored: send one of them")
    return ProblemError(
        409,
        "artwork-reuploaded",
        "Conflict",
        f"Nothing was restored: {'; '.join(parts)}. The site keeps one live post per artwork: "
        f"{'; '.join(fix)}. Leave {'it' if len(clashes) == 1 else 'them'} out and try again.",
        errors=[
            FieldError(field="post_ids", message=f"artwork held by another post: {c.post_id}")
            for c in clashes
        ],
        extra={
            "invalid_post_ids": [c.post_id for c in clashes],
            "conflicts": msgspec.to_builtins(clashes),
        },
        code=Code.ARTWORK_REUPLOADED,
    )
