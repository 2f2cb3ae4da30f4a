"""The recent bulk actions on a user's posts, newest first and keyset-paged, with undo links."""

from __future__ import annotations

import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from ...core.db import from_row
from ...host.access import Principal
from .cursor import EPOCH, invalid_cursor, micros, pack, unpack
from .schemas import ActionItem, ActionList, ActionPost
from .undo import UNDOABLE, WITHIN_WINDOW, acted_by

# How many of an action's posts the list names by title.
NAMED_POSTS = 3

# $1 the owner, $2 the moderator (NULL: the owner), $3 rows to read, $4, $5 the cursor's.
SQL_RECENT_ACTIONS = f"""
WITH page AS (
    SELECT id, action, created_at, changed_count, unchanged_count,
           actor_id IS NOT NULL AS by_moderator, policy_id, policy_name,
           {acted_by("$2")} AS by_you, undone_at,
           {UNDOABLE} AND {acted_by("$2")} AS undoable, post_ids[1:{NAMED_POSTS}] AS named
    FROM bulk_actions
    WHERE owner_id = $1 AND {WITHIN_WINDOW}
      AND ($4::timestamptz IS NULL OR (created_at, id) < ($4::timestamptz, $5::uuid))
    ORDER BY created_at DESC, id DESC
    LIMIT $3
)
SELECT page.*, coalesce(named_posts.ids, '{{}}') AS named_ids,
       coalesce(named_posts.titles, '{{}}') AS named_titles
FROM page
LEFT JOIN LATERAL (
    SELECT array_agg(p.id ORDER BY u.n) AS ids, array_agg(p.title ORDER BY u.n) AS titles
    FROM unnest(page.named) WITH ORDINALITY AS u(post_id, n)
    JOIN posts p ON p.id = u.post_id
) AS named_posts ON true
ORDER BY created_at DESC, id DESC
"""


def undo_link(action_id: uuid.UUID, principal: Principal) -> str:
    """An action's undo link: a moderator's carries the owner as `target_sqid`."""
    link = f"/api/pmd/actions/{action_id}/undo"
    if principal.as_moderator:
        link += f"?target_sqid={principal.target.public_sqid}"
    return link


async def recent_actions(
    pool: asyncpg.Pool, principal: Principal, limit: int, cursor: str | None
) -> ActionList:
    after = _Cursor.decode(cursor) if cursor else None
    actor = principal.caller.id if principal.as_moderator else None
    rows = await pool.fetch(
        SQL_RECENT_ACTIONS,
        principal.target.id,
        actor,
        limit + 1,
        after.at if after else None,
        after.action_id if after else None,
    )
    items = [
        from_row(
            ActionItem,
            r,
            undo=undo_link(r["id"], principal) if r["undoable"] else None,
            posts=[
                ActionPost(id=i, title=t)
                for i, t in zip(r["named_ids"], r["named_titles"], strict=True)
            ],
        )
        for r in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = _Cursor(last["created_at"], last["id"]).encode()
    return ActionList(items=items, next_cursor=next_cursor)


_CURSOR_RE = re.compile(r"a:(?P<micros>[0-9]{1,18}):(?P<id>[0-9a-f]{32})")


@dataclass(frozen=True)
class _Cursor:
    """Where the previous page ended: its last action's (created_at, id), as opaque text."""

    at: datetime
    action_id: uuid.UUID

    def encode(self) -> str:
        return pack(f"a:{micros(self.at)}:{self.action_id.hex}")

    @classmethod
    def decode(cls, token: str) -> _Cursor:
        """The cursor behind `token`; 400 for anything `encode` could not have produced."""
        try:
            raw = unpack(token)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raw = ""
        # A strict ASCII grammar: int() alone would also take "1_0" or non-Latin digits.
        match = _CURSOR_RE.fullmatch(raw)
        try:
            if match is not None:
                at = EPOCH + timedelta(microseconds=int(match["micros"]))
                return cls(at, uuid.UUID(hex=match["id"]))
        except OverflowError:
            pass
        raise invalid_cursor(
            "`cursor` is not one this list returned; pass `next_cursor` from the previous "
            "page unchanged, or omit it for the first page."
        )
