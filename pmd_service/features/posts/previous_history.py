"""The previous release's undo history, converted when one of its actions is undone."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import asyncpg

from ...core.codes import Code
from ...core.problems import ProblemError

if TYPE_CHECKING:
    from ...core.db import Conn

# $1 the action, locked by the caller; each post's (before, after) rows give its history.
SQL_CONVERT = """
WITH pairs AS (
    SELECT b.post_id, b.hashtags AS tags_before, w.hashtags AS tags_after,
           b.deleted_by_user_date, b.license_id, b.remixable,
           w.license_id AS wrote_license, w.remixable AS wrote_remixable
    FROM bulk_action_posts b
    JOIN bulk_action_posts w ON w.action_id = b.action_id AND w.post_id = b.post_id AND w.after
    WHERE b.action_id = $1 AND NOT b.after
), lists AS (
    SELECT ARRAY(SELECT DISTINCT t FROM pairs, unnest(tags_after) AS t
                 WHERE NOT t = ANY(tags_before) ORDER BY t)::varchar[] AS tags_add,
           ARRAY(SELECT DISTINCT t FROM pairs, unnest(tags_before) AS t
                 WHERE NOT t = ANY(tags_after) ORDER BY t)::varchar[] AS tags_remove
), history AS (
    SELECT a.id,
           array_agg(r.post_id ORDER BY r.post_id) AS post_ids,
           CASE a.action WHEN 'hide' THEN true WHEN 'unhide' THEN false
                         WHEN 'remixable' THEN bool_and(r.wrote_remixable) END AS wrote_flag,
           CASE WHEN a.action = 'license' THEN min(r.wrote_license) END AS wrote_license,
           CASE WHEN a.action = 'tags' THEN l.tags_add END AS tags_add,
           CASE WHEN a.action = 'tags' THEN l.tags_remove END AS tags_remove,
           CASE WHEN a.action = 'restore'
                THEN array_agg(r.deleted_by_user_date ORDER BY r.post_id) END AS prior_dates,
           CASE WHEN a.action = 'restore'
                THEN array_agg(a.actor_id ORDER BY r.post_id) END AS prior_marks,
           CASE WHEN a.action = 'license'
                THEN array_agg(r.license_id ORDER BY r.post_id) END AS prior_licenses,
           CASE WHEN a.action = 'license'
                THEN array_agg(r.remixable ORDER BY r.post_id) END AS prior_remixable,
           CASE WHEN a.action = 'tags' THEN jsonb_agg(jsonb_build_object('h', pmd_tags_diff(
                    r.tags_before, r.tags_after, l.tags_add::text[], l.tags_remove::text[]))
                ORDER BY r.post_id) END AS tag_changes,
           CASE WHEN a.action = 'tags' THEN array_agg(md5(r.tags_after::text
                    || CASE WHEN a.actor_id IS NULL THEN '' ELSE p.mod_hashtags::text END)::uuid
                ORDER BY r.post_id) END AS tags_after
    FROM bulk_actions a, lists l, pairs r LEFT JOIN posts p ON p.id = r.post_id
    WHERE a.id = $1
    GROUP BY a.id, a.action, a.actor_id, l.tags_add, l.tags_remove
), converted AS (
    UPDATE bulk_actions a
    SET post_ids = h.post_ids, wrote_flag = h.wrote_flag, wrote_license = h.wrote_license,
        tags_add = h.tags_add, tags_remove = h.tags_remove, prior_dates = h.prior_dates,
        prior_marks = h.prior_marks, prior_licenses = h.prior_licenses,
        prior_remixable = h.prior_remixable, tag_changes = h.tag_changes,
        tags_after = h.tags_after, history_bytes = pg_column_size(h.*)
    FROM history h
    WHERE a.id = h.id AND a.post_ids IS NULL
    RETURNING a.id
), dropped AS (
    DELETE FROM bulk_action_posts WHERE action_id IN (SELECT id FROM converted) RETURNING 1
)
SELECT count(*) FROM converted
"""


async def convert(conn: Conn, action_id: uuid.UUID) -> None:
    """Converts the previous release's action, or 410 when its history is not there."""
    try:
        converted = await conn.fetchval(SQL_CONVERT, action_id)
    except asyncpg.UndefinedTableError:
        converted = 0  # a later release, migrated meanwhile, dropped the old table
    if not converted:
        raise ProblemError(
            410,
            "history-missing",
            "Gone",
            "This action was recorded by the previous release of the service, and its undo "
            "history is not there any more; it can no longer be undone.",
            code=Code.UNDO_HISTORY_MISSING,
        )
