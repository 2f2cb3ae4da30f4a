"""Undo of a bulk action (POST /api/pmd/actions/{id}/undo): within 24 hours, each post the
action changed gets back its own previous values, unless it changed again since."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from ..core.problems import ProblemError, conflict, gone, not_found
from ..host.access import Principal
from ..host.eligibility import list_ids

# upkeep/cleanup.py purges the history past this window.
UNDO_HOURS = 24

# One statement, as the actions: lock the action's row (a second undo waits, then finds it
# undone) and its posts in id order, put back every post that still holds what the action
# wrote (migrations/0010_bulk_undo.sql says why not its metadata_modified_at), bump the host's
# columns as any bulk write does, keep the moderator-deletion marks true to the restored flags,
# mark the action undone, audit a moderator's undo and NOTIFY. Only the caller who acted
# (the owner, or the same moderator) may undo.
_AS_BEFORE = """
    hidden_by_user = r.hidden_by_user, hidden_by_mod = r.hidden_by_mod,
    deleted_by_user = r.deleted_by_user, deleted_by_user_date = r.deleted_by_user_date,
    license_id = r.license_id, remixable = r.remixable, hashtags = r.hashtags"""
_COLUMNS = (
    "{t}.hidden_by_user, {t}.hidden_by_mod, {t}.deleted_by_user, {t}.deleted_by_user_date, "
    "{t}.license_id, {t}.remixable, {t}.hashtags"
)
SQL_UNDO = f"""
WITH act AS (
    SELECT id, owner_id, actor_id, action, created_at FROM bulk_actions
    WHERE id = $1 AND owner_id = $2 AND actor_id IS NOT DISTINCT FROM $3::int
      AND undone_at IS NULL AND created_at > now() - interval '{UNDO_HOURS} hours'
    FOR UPDATE
), locked AS (
    SELECT b.post_id, b.hidden_by_user, b.hidden_by_mod, b.deleted_by_user,
           b.deleted_by_user_date, b.license_id, b.remixable, b.hashtags,
           ({_COLUMNS.format(t="p")}) IS NOT DISTINCT FROM ({_COLUMNS.format(t="w")}) AS unchanged
    FROM act a
    JOIN bulk_action_posts b ON b.action_id = a.id AND NOT b.after
    JOIN bulk_action_posts w ON w.action_id = a.id AND w.post_id = b.post_id AND w.after
    JOIN posts p ON p.id = b.post_id AND p.owner_id = a.owner_id
    ORDER BY b.post_id
    FOR UPDATE OF p
), restored AS (
    UPDATE posts p SET {_AS_BEFORE}, updated_at = now(), metadata_modified_at = now()
    FROM locked r
    WHERE p.id = r.post_id AND r.unchanged
    RETURNING p.id, p.deleted_by_user
), unmarked AS (
    DELETE FROM moderator_deletions
    WHERE post_id IN (SELECT id FROM restored WHERE NOT deleted_by_user)
    RETURNING 1
), marked AS (
    -- Undoing a moderator's restore deletes again: as the moderator's delete, marked.
    INSERT INTO moderator_deletions (post_id, owner_id, deleted_by)
    SELECT r.id, a.owner_id, a.actor_id FROM restored r, act a
    WHERE r.deleted_by_user AND a.actor_id IS NOT NULL AND a.action = 'restore'
    ON CONFLICT (post_id) DO NOTHING
    RETURNING 1
), done AS (
    UPDATE bulk_actions SET undone_at = now() WHERE id = (SELECT id FROM act) RETURNING 1
), kept AS (
    SELECT coalesce(array_agg(b.post_id ORDER BY b.post_id), '{{}}') AS ids
    FROM act a JOIN bulk_action_posts b ON b.action_id = a.id AND NOT b.after
    WHERE b.post_id NOT IN (SELECT id FROM restored)
), restored_ids AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids FROM restored
), audited AS (
    INSERT INTO audit_logs (id, actor_id, action, target_type, target_id, note)
    SELECT gen_random_uuid(), a.actor_id, 'pmd_batch_undo', 'user', a.owner_id::text,
           json_build_object('action_id', a.id, 'undid', a.action,
                             'restored', cardinality(r.ids), 'left', k.ids)::text
    FROM act a, restored_ids r, kept k
    WHERE a.actor_id IS NOT NULL
    RETURNING 1
), notified AS (
    SELECT pg_notify(
        'pmd_posts_changed',
        json_build_object(
            'user_id', $2::int, 'action', 'undo',
            'post_ids', CASE WHEN cardinality(r.ids) <= 500 THEN r.ids END,
            'changed_count', cardinality(r.ids)
        )::text
    )
    FROM restored_ids r
    WHERE cardinality(r.ids) > 0
)
SELECT (SELECT action FROM act) AS action, cardinality(r.ids) AS restored, k.ids AS kept,
       (SELECT count(*) FROM done) AS done, (SELECT count(*) FROM unmarked) AS unmarked,
       (SELECT count(*) FROM marked) AS marked, (SELECT count(*) FROM audited) AS audited,
       (SELECT count(*) FROM notified) AS notified
FROM restored_ids r, kept k
"""
# Why an undo found nothing to undo: which of the answers it gets.
SQL_WHY_NOT = f"""
SELECT undone_at IS NOT NULL AS undone,
       created_at <= now() - interval '{UNDO_HOURS} hours' AS expired
FROM bulk_actions
WHERE id = $1 AND owner_id = $2 AND actor_id IS NOT DISTINCT FROM $3::int
"""

_WHAT = {
    "hide": "hide", "unhide": "unhide", "delete": "delete", "restore": "restore",
    "license": "license change", "tags": "tag change", "remixable": "remix permission change",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class UndoOutcome:
    restored: int
    left: list[int]
    message: str


async def undo(pool: asyncpg.Pool, principal: Principal, action_id: uuid.UUID) -> UndoOutcome:
    actor = principal.caller.id if principal.as_moderator else None
    owner = principal.target.id
    row = await pool.fetchrow(SQL_UNDO, action_id, owner, actor)
    assert row is not None  # the statement always returns exactly one row
    if row["action"] is None:
        raise await _why_not(pool, action_id, owner, actor)
    left = list(row["kept"])
    what = _WHAT.get(row["action"], row["action"])
    message = f"Undid the {what} of {row['restored']} post(s)"
    if left:
        message += (
            f"; {len(left)} changed again since and {'was' if len(left) == 1 else 'were'} "
            f"left as {'it is' if len(left) == 1 else 'they are'}: {list_ids(left)}"
        )
    return UndoOutcome(row["restored"], left, message)


async def _why_not(
    pool: asyncpg.Pool, action_id: uuid.UUID, owner: int, actor: int | None
) -> ProblemError:
    why = await pool.fetchrow(SQL_WHY_NOT, action_id, owner, actor)
    if why is None:
        return not_found(
            "No bulk action with this id is yours to undo (only who acted can undo it)."
        )
    if why["undone"]:
        return conflict("This action was undone already.", slug="already-undone")
    return gone(f"An action can be undone for {UNDO_HOURS} hours after it ran; this one is older.")
