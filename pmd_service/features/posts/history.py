"""The recent bulk actions on a user's posts, newest first and keyset-paged, with undo links."""

from __future__ import annotations

import binascii
import re
import uuid
from datetime import datetime, timedelta

import asyncpg

from ...core.db import from_row
from ...core.named_sql import Named
from ...host.access import Principal
from .cursor import EPOCH, invalid_cursor, micros, pack, unpack
from .schemas import ActionItem, ActionList, ActionPost
from .undo import ACTED_BY, HISTORY_KEPT, WITHIN_WINDOW, same_click

# How many of an action's posts the list names by title.
NAMED_POSTS = 3

# A click's batches are one entry (posts/undo.py, same_click): its first batch, the head, names
# it; `g` is a batch of the head `h`'s click (only the head itself when it names none).
_OF_CLICK = same_click("g", "h.click_id", "h.owner_id", "h.actor_id", "h.action")
_OF_HEAD = f"(g.id = h.id OR {_OF_CLICK})"

# `actor`: the moderator (NULL: the owner); `rows` to read; `at`, `action_id`: the cursor's.
SQL_RECENT_ACTIONS = Named(f"""
WITH heads AS (
    SELECT h.* FROM bulk_actions h
    WHERE h.owner_id = :owner AND h.{WITHIN_WINDOW}
      AND (:at::timestamptz IS NULL OR (h.created_at, h.id) < (:at::timestamptz, :action_id::uuid))
      AND NOT EXISTS (
          SELECT 1 FROM bulk_actions g
          WHERE {_OF_CLICK}
            AND (g.created_at, g.id) < (h.created_at, h.id))
    ORDER BY h.created_at DESC, h.id DESC
    LIMIT :rows
), page AS (
    SELECT h.id, h.action, h.created_at, c.changed_count, c.unchanged_count,
           h.actor_id IS NOT NULL AS by_moderator, h.policy_id, h.policy_name,
           {ACTED_BY} AS by_you, c.undone_at,
           c.undoable AND {ACTED_BY} AS undoable, c.named
    FROM heads h
    CROSS JOIN LATERAL (
        -- Undone once every batch is; undoable while one is not and none of those was dropped.
        SELECT sum(g.changed_count)::int AS changed_count,
               sum(g.unchanged_count)::int AS unchanged_count,
               CASE WHEN bool_and(g.undone_at IS NOT NULL) THEN max(g.undone_at) END AS undone_at,
               bool_or(g.undone_at IS NULL)
                   AND bool_and(g.undone_at IS NOT NULL OR g.{HISTORY_KEPT}) AS undoable,
               ARRAY(SELECT u.post_id
                     FROM bulk_actions g, unnest(g.post_ids) WITH ORDINALITY AS u(post_id, n)
                     WHERE {_OF_HEAD}
                     ORDER BY g.created_at, g.id, u.n
                     LIMIT {NAMED_POSTS}) AS named
        FROM bulk_actions g
        WHERE {_OF_HEAD}
    ) c
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
""")


def undo_link(action_id: uuid.UUID, principal: Principal) -> str:
    """An action's undo link: a moderator's carries the owner as `target_sqid`."""
    link = f"/api/pmd/actions/{action_id}/undo"
    if principal.as_moderator:
        link += f"?target_sqid={principal.target.public_sqid}"
    return link


async def recent_actions(
    pool: asyncpg.Pool, principal: Principal, limit: int, cursor: str | None
) -> ActionList:
    at, action_id = _after(cursor) if cursor else (None, None)
    actor = principal.caller.id if principal.as_moderator else None
    values: dict[str, object] = {"owner": principal.target.id, "actor": actor, "rows": limit + 1}
    values |= {"at": at, "action_id": action_id}
    rows = await pool.fetch(*SQL_RECENT_ACTIONS.bind(values))
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
        next_cursor = pack(f"a:{micros(last['created_at'])}:{last['id'].hex}")
    return ActionList(items=items, next_cursor=next_cursor)


_CURSOR_RE = re.compile(r"a:(?P<micros>[0-9]{1,18}):(?P<id>[0-9a-f]{32})")


def _after(token: str) -> tuple[datetime, uuid.UUID]:
    """Where the previous page ended: its last action's (created_at, id); 400 for anything
    `recent_actions` could not have made."""
    try:
        # A strict ASCII grammar: int() alone would also take "1_0" or non-Latin digits.
        match = _CURSOR_RE.fullmatch(unpack(token))
        if match is not None:
            at = EPOCH + timedelta(microseconds=int(match["micros"]))
            return at, uuid.UUID(hex=match["id"])
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        pass
    raise invalid_cursor(
        "`cursor` is not one this list returned; pass `next_cursor` from the previous "
        "page unchanged, or omit it for the first page."
    )
