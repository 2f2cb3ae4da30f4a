"""Incremental exports: what an export following an earlier one holds, and what it lists as
removed. The server asks it at a request (nothing changed: no export); the worker again when it
plans the parts, so the parts hold what is true then.

An export that reached `ready` records the posts it holds (`covered_post_ids`); the follower
copies them and the time its predecessor started at its request. The follower then holds every
artwork of the user created or changed since that time (metadata, artwork or layers file), or
not among those posts (one restored, or given back, since); and it lists as removed each of
those posts that is no longer the user's artwork (deleted, turned into a playlist, moved).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from ..core.problems import FieldError, ProblemError

if TYPE_CHECKING:
    from ..core.db import Conn

LAST = "last"

# The exports a follower may follow: reached `ready` (their files may have expired since).
SQL_FOLLOWABLE = """
SELECT id, started_at, covered_post_ids FROM exports
WHERE user_id = $1 AND covered_post_ids IS NOT NULL AND ($2::uuid IS NULL OR id = $2)
ORDER BY created_at DESC, id DESC LIMIT 1
"""


def changed(since: str, base: str) -> str:
    """Post `p` is changed since `since` or not among `base` (two SQL parameters, `since`
    null: every post). The server's count and the worker's plan use this one predicate."""
    return f"""(
    {since}::timestamptz IS NULL
    OR p.created_at > {since} OR p.metadata_modified_at > {since}
    OR p.artwork_modified_at > {since} OR p.mkpx_attached_at > {since}
    OR NOT (p.id = ANY({base}::int[]))
)"""


SQL_CHANGED_COUNT = f"""
SELECT count(*) FROM posts p
WHERE p.owner_id = $1 AND p.kind = 'artwork' AND NOT p.deleted_by_user AND {changed("$2", "$3")}
"""
SQL_REMOVED = """
SELECT b.id AS post_id, p.public_sqid,
       CASE WHEN p.id IS NULL OR p.deleted_by_user THEN 'deleted'
            WHEN p.owner_id <> $1 THEN 'not_owner' ELSE 'playlist' END AS reason
FROM unnest($2::int[]) AS b(id)
LEFT JOIN posts p ON p.id = b.id
WHERE p.id IS NULL OR p.owner_id <> $1 OR p.kind <> 'artwork' OR p.deleted_by_user
ORDER BY b.id
"""


@dataclass(frozen=True)
class Follows:
    """The export an incremental one follows, as the follower keeps it."""

    export_id: uuid.UUID
    started_at: datetime
    post_ids: list[int]


def parse_since(value: str | None) -> uuid.UUID | str | None:
    """`since` checked before anything else: an export id, `last`, or none."""
    if value is None or value == LAST:
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _bad_since(
            f"`since` must be an export's id or `last`; got {value[:40]!r}.",
            "must be an export id (a UUID) or `last`",
        ) from None


def _bad_since(detail: str, message: str) -> ProblemError:
    return ProblemError(
        400, "invalid-since", "Bad Request", detail,
        errors=[FieldError(field="since", message=message)],
    )  # fmt: skip


async def followed(conn: Conn, user_id: int, since: uuid.UUID | str) -> Follows:
    """The export `since` names: one of the user's that reached `ready`, else a 400."""
    wanted = since if isinstance(since, uuid.UUID) else None
    row = await conn.fetchrow(SQL_FOLLOWABLE, user_id, wanted)
    if row is None:
        if wanted is None:
            raise _bad_since(
                "`since: last` needs an earlier export of yours that was ready; there is none: "
                "request a full export first (leave `since` out).",
                "no earlier export of yours was ready",
            )
        raise _bad_since(
            f"`since` names {wanted}, which is not an export of yours that was ready (it may "
            "be another's, still running, failed, cancelled, or made before incremental "
            "exports); name one listed as ready, or use `last`.",
            "names no export of yours that was ready",
        )
    return Follows(row["id"], row["started_at"], list(row["covered_post_ids"]))


async def changed_count(conn: Conn, user_id: int, follows: Follows) -> int:
    count: int = await conn.fetchval(
        SQL_CHANGED_COUNT, user_id, follows.started_at, follows.post_ids
    )
    return count


async def removed(
    conn: Conn | asyncpg.Pool, user_id: int, post_ids: list[int]
) -> list[asyncpg.Record]:
    """Of `post_ids`, those no longer the user's artwork, with why."""
    rows: list[asyncpg.Record] = await conn.fetch(SQL_REMOVED, user_id, post_ids)
    return rows
