"""Incremental exports: the artworks new or changed since a ready export started."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from ...core.codes import Code
from ...core.named_sql import Named
from ...core.problems import FieldError, ProblemError
from ...zipbuild.content import METADATA_ONLY

if TYPE_CHECKING:
    from ...core.db import Conn

LAST = "last"
# A post's change in an incremental export: new to it, its files changed, or metadata alone.
ADDED = "added"
FILES_CHANGED = "files"


def followable(e: str) -> str:
    """Export `e` reached `ready` (or `ready_at` is set) and records its posts."""
    return f"""(({e}.ready_at IS NOT NULL OR {e}.status = 'ready')
    AND {e}.covered_post_ids IS NOT NULL)"""


# `since` by id, followable or not, so a refusal can say what it is; `last`: the user's own.
SQL_NAMED = f"""
SELECT id, status, started_at, covered_post_ids, layout, {followable("e")} AS followable
FROM exports e WHERE user_id = $1 AND id = $2
"""
SQL_LAST = f"""
SELECT id, status, started_at, covered_post_ids, layout, true AS followable FROM exports e
WHERE user_id = $1 AND {followable("e")} AND NOT by_operator
ORDER BY created_at DESC, id DESC LIMIT 1
"""


# Whether post `p` is new to the export followed (started at `:since`, holding `:base`).
_NEW_TO_IT = "(p.created_at > :since OR NOT (p.id = ANY(:base::int[])))"
# A layers file removed is a metadata change: `mkpx_attached_at` goes null.
_FILES_CHANGED = "(p.artwork_modified_at > :since OR p.mkpx_attached_at > :since)"
# Post `p` carries its files, or is changed at all; `:since` null (a full export): every post.
CARRIES_FILES = f"(:since::timestamptz IS NULL OR {_NEW_TO_IT} OR {_FILES_CHANGED})"
CHANGED = f"({CARRIES_FILES} OR p.metadata_modified_at > :since)"


def added_count(e: str) -> str:
    """Of incremental export `e`'s planned posts, those new to it (null until planned)."""
    return f"""(CASE WHEN {e}.follows_id IS NOT NULL
    AND EXISTS (SELECT 1 FROM export_parts ep WHERE ep.export_id = {e}.id) THEN (
    SELECT count(*)::int FROM export_parts ep, unnest(ep.post_ids) AS x(id)
    LEFT JOIN posts p ON p.id = x.id
    WHERE ep.export_id = {e}.id
      AND (NOT (x.id = ANY({e}.base_post_ids)) OR p.created_at > {e}.follows_started_at)) END)"""


SQL_CHANGED_COUNT = Named(f"""
SELECT count(*) FROM posts p
WHERE p.owner_id = :owner AND p.kind = 'artwork' AND NOT p.deleted_by_user
  AND {CHANGED}
""")
# Each post's change, as its entry in metadata.json says it (zipbuild/content.py).
SQL_CHANGES = Named(f"""
SELECT p.id, CASE WHEN {_NEW_TO_IT} THEN '{ADDED}'
                  WHEN {_FILES_CHANGED} THEN '{FILES_CHANGED}'
                  ELSE '{METADATA_ONLY}' END AS change
FROM posts p WHERE p.id = ANY(:post_ids::int[])
""")
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
    layout: str  # what a follower asking for none keeps


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


def _bad_since(detail: str, message: str, extra: dict[str, Any] | None = None) -> ProblemError:
    return ProblemError(
        400,
        "invalid-since",
        "Bad Request",
        detail,
        errors=[FieldError(field="since", message=message)],
        extra=extra,
        code=Code.INVALID_SINCE,
    )


# Why an export of the user cannot be followed, by its status.
_NOT_READY = {
    "pending": "is still waiting for a worker: it can be followed once it is ready",
    "processing": "is still being built: it can be followed once it is ready",
    "cancelled": "was cancelled before it was ready",
    "failed": "failed before it was ready",
    "expired": "ended before it was ready",
}


async def followed(conn: Conn, user_id: int, since: uuid.UUID | str) -> Follows:
    """The export `since` names, else a 400 saying why and naming the one `last` would follow."""
    if isinstance(since, uuid.UUID):
        row = await conn.fetchrow(SQL_NAMED, user_id, since)
    else:
        row = await conn.fetchrow(SQL_LAST, user_id)
    if row is not None and row["followable"]:
        return Follows(row["id"], row["started_at"], list(row["covered_post_ids"]), row["layout"])
    last = await conn.fetchrow(SQL_LAST, user_id)
    instead = (
        "None of yours can be followed yet: request a full export (leave `since` out)."
        if last is None
        else f"The newest you can follow is {last['id']} (or say `last`)."
    )
    extra = {"followable_export_id": None if last is None else str(last["id"])}
    if not isinstance(since, uuid.UUID):
        raise _bad_since(
            "`since: last` needs an earlier export of yours that was ready; there is none: "
            "request a full export first (leave `since` out).",
            "no earlier export of yours was ready",
            extra,
        )
    if row is None:
        raise _bad_since(
            f"`since` names {since}, which is not an export of yours. {instead}",
            "names no export of yours",
            extra,
        )
    why = _NOT_READY.get(row["status"], "was made before incremental exports")
    raise _bad_since(
        f"`since` names export {since}, which {why}; only an export that reached ready can be "
        f"followed, so that no change is left out of every export. {instead}",
        f"names an export that {why.split(':')[0]}",
        extra | {"since_status": row["status"]},
    )


async def changed_count(conn: Conn, user_id: int, follows: Follows) -> int:
    asked = {"owner": user_id, "since": follows.started_at, "base": follows.post_ids}
    return int(await conn.fetchval(*SQL_CHANGED_COUNT.bind(asked)))


async def removed(
    conn: Conn | asyncpg.Pool, user_id: int, post_ids: list[int]
) -> list[asyncpg.Record]:
    """Of `post_ids`, those no longer the user's artwork, with why."""
    return await conn.fetch(SQL_REMOVED, user_id, post_ids)


async def changes(
    pool: asyncpg.Pool, post_ids: list[int], since: datetime, base: list[int]
) -> dict[int, str]:
    """Each post's change since the export followed: ADDED, FILES_CHANGED or METADATA_ONLY."""
    rows = await pool.fetch(*SQL_CHANGES.bind({"post_ids": post_ids, "since": since, "base": base}))
    return {r["id"]: r["change"] for r in rows}
