"""Undo of a bulk action: each post it changed gets back its values unless changed again since."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING

import asyncpg

from ...core.codes import Code
from ...core.named_sql import Named
from ...core.problems import ProblemError, conflict, gone, not_found
from ...host.access import Principal
from ...host.eligibility import list_ids
from .action_shape import BulkAction
from .actions import ACTIONS, named
from .live import announce
from .pace import Budget, hold_budget
from .previous_history import convert
from .restore_rule import artwork_held, unless_raced
from .schemas import UndoResult

if TYPE_CHECKING:
    from ...core.db import Conn

# upkeep/cleanup.py purges the history past this window.
UNDO_HOURS = 24
# Per person who acted (WHO_ACTED), so no one's actions can drop someone else's undo.
KEPT_HISTORY_BYTES = 2 * 1024 * 1024
# Who acted: the moderator, or the owner (migrations/0019's index is on this very expression).
WHO_ACTED = "coalesce(actor_id, owner_id)"
# Clears an action's history (kept beyond the cap, or undone): its row stays to answer why.
DROP_HISTORY = (
    "post_ids = NULL, prior_dates = NULL, prior_marks = NULL, prior_licenses = NULL, "
    "prior_remixable = NULL, tag_changes = NULL, tags_after = NULL, history_bytes = 0"
)
# The daily cleanup's (upkeep/cleanup.py), as of its `clock`: the history past the undo window, and
# moderators' marks of posts no longer deleted (or gone).
_UNDO_PURGE = f"created_at < :clock::timestamptz - interval '{UNDO_HOURS} hours'"
UNDO_ROWS_PAST = f"""SELECT count(*) FROM bulk_action_posts
   WHERE action_id IN (SELECT id FROM bulk_actions WHERE {_UNDO_PURGE})"""
SQL_PURGE_UNDO_HISTORY = Named(f"""
WITH gone AS (DELETE FROM bulk_actions WHERE {_UNDO_PURGE} RETURNING id)
DELETE FROM bulk_action_posts WHERE action_id IN (SELECT id FROM gone)
""")
_MARK_PURGE = "NOT EXISTS (SELECT 1 FROM posts p WHERE p.id = m.post_id AND p.deleted_by_user)"
MARKS_PAST = f"""SELECT coalesce(array_agg(post_id), '{{}}') FROM moderator_deletions m
   WHERE {_MARK_PURGE}"""
SQL_PURGE_MARKS = Named(f"""
DELETE FROM moderator_deletions m WHERE post_id = ANY(:ids::int[]) AND {_MARK_PURGE}
RETURNING post_id
""")

# What makes a `bulk_actions` row undoable, for the undo and the list of actions.
WITHIN_WINDOW = f"created_at > now() - interval '{UNDO_HOURS} hours'"


def same_click(batch: str, click: str, owner: str, actor: str, action: str) -> str:
    """SQL: the `bulk_actions` row `batch` is a batch of the click `click` (a uuid; NULL: none)
    on `owner`'s posts, by `actor` (NULL: the owner), of `action`, within the undo window."""
    return (
        f"{batch}.click_id = {click} AND {batch}.owner_id = {owner}"
        f" AND {batch}.actor_id IS NOT DISTINCT FROM {actor} AND {batch}.action = {action}"
        f" AND {batch}.{WITHIN_WINDOW}"
    )


def first_of_click(click: str, owner: str, actor: str, action: str) -> str:
    """SQL: the click's first batch, whose id is its entry in the history (NULL: none yet)."""
    return f"""(SELECT b.id FROM bulk_actions b WHERE {same_click("b", click, owner, actor, action)}
        ORDER BY b.created_at, b.id LIMIT 1)"""


# Not `post_ids IS NOT NULL`: a row the previous release wrote has none and is kept too.
HISTORY_KEPT = "dropped_at IS NULL"
UNDOABLE = f"undone_at IS NULL AND {WITHIN_WINDOW} AND {HISTORY_KEPT}"
# Only who acted may undo: `:actor` is the moderator's user id, NULL for the owner.
ACTED_BY = "actor_id IS NOT DISTINCT FROM :actor::int"


# The action and, when it is a batch of a click, every batch of that click, locked in id order
# (a second undo waits, then finds them undone); only who acted may undo it.
SQL_ACTION = Named(f"""
WITH named AS (
    SELECT id, click_id, owner_id, actor_id, action FROM bulk_actions
    WHERE id = :action_id AND owner_id = :owner AND {ACTED_BY}
)
SELECT b.id, b.id = :action_id AS named, b.action, b.actor_id IS NOT NULL AS by_moderator,
       b.undone_at IS NOT NULL AS undone, NOT (b.{WITHIN_WINDOW}) AS expired,
       NOT (b.{HISTORY_KEPT}) AS dropped, b.post_ids IS NULL AS previous_release, b.created_at
FROM bulk_actions b
WHERE b.id IN (
    SELECT id FROM named
    UNION
    SELECT c.id FROM named n
    JOIN bulk_actions c ON {same_click("c", "n.click_id", "n.owner_id", "n.actor_id", "n.action")}
)
ORDER BY b.id
FOR UPDATE OF b
""")

# One statement per action and caller; past `room` posts (the budget's) no post changes.
_UNDO = """
WITH act AS (
    SELECT * FROM bulk_actions WHERE id = :action_id
), prior AS (
    SELECT u.post_id, u.date, u.mark, u.license, u.remixable, u.after,
           a.tag_changes -> (u.n::int - 1) AS diff
    FROM act a, unnest(a.post_ids, a.prior_dates, a.prior_marks, a.prior_licenses,
                       a.prior_remixable, a.tags_after)
                WITH ORDINALITY AS u(post_id, date, mark, license, remixable, after, n)
), locked AS (
    SELECT r.*, CASE WHEN p.kind <> 'artwork' THEN 'not an artwork any more'
                     WHEN NOT ({holds}) THEN 'changed'
                     WHEN NOT ({allowed}) THEN '{refused}' END AS left_why
    FROM act a JOIN prior r ON true
    JOIN posts p ON p.id = r.post_id AND p.owner_id = a.owner_id
    ORDER BY p.id
    FOR UPDATE OF p
), clashes AS (
    {clashes}
), restored AS (
    UPDATE posts p SET {assign}, updated_at = now(), metadata_modified_at = now()
    FROM locked r, act a
    WHERE p.id = r.post_id AND r.left_why IS NULL AND NOT EXISTS (SELECT 1 FROM clashes)
      AND (SELECT count(*) FROM locked WHERE left_why IS NULL) <= :room::int
    RETURNING p.id
){marks}, done AS (
    -- An undo that put nothing back stays offered while a post it left could be as the
    -- action left it again (changed back, or its license no longer NoDerivatives).
    UPDATE bulk_actions SET undone_at = now(), {drop}
    WHERE id = :action_id AND NOT EXISTS (SELECT 1 FROM clashes)
      AND (EXISTS (SELECT 1 FROM restored)
           OR NOT EXISTS (SELECT 1 FROM locked WHERE left_why IN ('changed', 'NoDerivatives')))
    RETURNING 1
), restored_ids AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids FROM restored
), left_posts AS (
    SELECT coalesce(array_agg(r.post_id ORDER BY r.post_id), '{{}}') AS ids,
           coalesce(array_agg(coalesce(l.left_why, 'gone') ORDER BY r.post_id), '{{}}') AS whys
    FROM prior r LEFT JOIN locked l ON l.post_id = r.post_id
    WHERE r.post_id NOT IN (SELECT id FROM restored)
), audited AS (
    INSERT INTO audit_logs (id, actor_id, action, target_type, target_id, note)
    SELECT gen_random_uuid(), a.actor_id, 'pmd_batch_undo', 'user', a.owner_id::text,
           json_build_object('action_id', a.id, 'undid', a.action,
                             'restored', cardinality(r.ids), 'left', k.ids)::text
    FROM act a, restored_ids r, left_posts k
    WHERE a.actor_id IS NOT NULL
    RETURNING 1
), notified AS (
    SELECT {announce} FROM restored_ids r, act a WHERE cardinality(r.ids) > 0
)
SELECT cardinality(r.ids) AS restored, k.ids AS left_ids,
       (SELECT count(*) FROM locked WHERE left_why IS NULL) AS would, k.whys AS left_whys,
       (SELECT count(*) FROM done) AS done, (SELECT count(*) FROM audited) AS audited,
       (SELECT count(*) FROM notified) AS notified,
       (SELECT json_agg(json_build_object(
            'post_id', c.id, 'public_sqid', c.public_sqid, 'held_by', json_build_object(
                'post_id', c.held_id, 'public_sqid', c.held_sqid, 'live', true))
            ORDER BY c.id) FROM clashes c) AS clashes
FROM restored_ids r, left_posts k
"""


_ANNOUNCE = announce("a.owner_id", "'undo'", "r.ids", "a.id")
SQL_UNDO: dict[tuple[str, bool], Named] = {
    (action.name, moderator): Named(
        _UNDO.format(**asdict(action.caller(moderator).undo), drop=DROP_HISTORY, announce=_ANNOUNCE)
    )
    for action in ACTIONS
    for moderator in (False, True)
}


def undo_statement(action: BulkAction, *, moderator: bool) -> Named:
    return SQL_UNDO[action.name, moderator]


# Why a post was left, as the message says it (one post, several).
_LEFT = {
    "changed": (
        "changed again since and was left as it is",
        "changed again since and were left as they are",
    ),
    "license gone": (
        "had a license that no longer exists and was left",
        "had licenses that no longer exist and were left",
    ),
    "NoDerivatives": (
        "has a NoDerivatives license, which forbids remixes, and was left",
        "have NoDerivatives licenses, which forbid remixes, and were left",
    ),
    "not an artwork any more": (
        "is not an artwork any more and was left",
        "are not artworks any more and were left",
    ),
    "gone": ("is no longer the owner's and was left", "are no longer the owner's and were left"),
}


async def undo(
    pool: asyncpg.Pool, principal: Principal, action_id: uuid.UUID, *, budget: Budget
) -> UndoResult:
    actor = principal.caller.id if principal.as_moderator else None
    owner = principal.target.id

    async def attempt(conn: Conn) -> tuple[BulkAction, list[asyncpg.Record], int, bool]:
        room = await hold_budget(conn, budget, owner, actor)
        asked = {"action_id": action_id, "owner": owner, "actor": actor}
        batches = _check(await conn.fetch(*SQL_ACTION.bind(asked)))
        action = named(batches[0]["action"])
        sql = undo_statement(action, moderator=batches[0]["by_moderator"])
        rows: list[asyncpg.Record] = []
        restored = 0
        # Newest first, as undoing each batch in turn would: each post gets its own values back.
        for batch in batches:
            if batch["previous_release"]:
                await convert(conn, batch["id"])
            left = max(room.left - restored, 0)
            row = await conn.fetchrow(*sql.bind({"action_id": batch["id"], "room": left}))
            assert row is not None  # the statement always returns exactly one row
            rows.append(row)
            restored += row["restored"]
        clashes = [clash for r in rows for clash in r["clashes"] or []]
        if clashes:
            raise artwork_held(clashes)  # rolls back the batches undone before it
        would = sum(r["would"] for r in rows)
        if would > room.left:
            raise await room.refusal(would)  # rolls back the undo's marks
        await room.spend(restored)
        return action, rows, restored, all(r["done"] > 0 for r in rows)

    action, rows, restored, undone = await unless_raced(
        pool,
        attempt,
        "An artwork of these posts was uploaded again while the undo ran; nothing was "
        "changed. Try the undo again to see which posts can no longer be restored.",
    )
    by_why: dict[str, list[int]] = {}
    for row in rows:
        for post_id, why in zip(row["left_ids"], row["left_whys"], strict=True):
            by_why.setdefault(why, []).append(post_id)
    left = sorted({post_id for ids in by_why.values() for post_id in ids})
    what = action.undone
    message = (
        f"Undid the {what} of {restored} post{'' if restored == 1 else 's'}"
        if restored or not left
        else f"Nothing to undo: every post this {what} changed was changed since"
    )
    for why, ids in by_why.items():
        ids = sorted(set(ids))
        # "post 12", "posts 12, 13": the form the page names by title.
        listed = f"post {ids[0]}" if len(ids) == 1 else f"posts {list_ids(ids)}"
        message += f"; {listed} {_LEFT[why][len(ids) != 1]}"
    return UndoResult(
        success=True, affected_count=restored, message=message, left_post_ids=left, undone=undone
    )


def _check(batches: list[asyncpg.Record]) -> list[asyncpg.Record]:
    """The batches left to undo, newest first, or the problem saying why there are none."""
    act = next((b for b in batches if b["named"]), None)
    if act is None:
        raise not_found(
            "No bulk action with this id is yours to undo (only who acted can undo it).",
            code=Code.ACTION_NOT_FOUND,
        )
    left = [b for b in batches if not b["undone"]]
    if not left:
        raise conflict(
            "This action was undone already.", slug="already-undone", code=Code.ALREADY_UNDONE
        )
    if act["expired"]:
        raise gone(
            f"An action can be undone for {UNDO_HOURS} hours after it ran; this one is older.",
            code=Code.UNDO_EXPIRED,
            details={"hours": UNDO_HOURS},
        )
    if any(b["dropped"] for b in left):
        raise ProblemError(
            410,
            "history-dropped",
            "Gone",
            "This action can no longer be undone: each person's undo history keeps the newest "
            f"of their own actions up to {KEPT_HISTORY_BYTES // 1024 // 1024} MiB, and this "
            "one's was dropped to make room for newer actions by the same person.",
            code=Code.UNDO_DROPPED,
            details={"kept_history_bytes": KEPT_HISTORY_BYTES},
        )
    return sorted(left, key=lambda b: (b["created_at"], b["id"]), reverse=True)
