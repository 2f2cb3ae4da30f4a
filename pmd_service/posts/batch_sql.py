"""The statements of batch actions: one template, one statement per action and caller kind."""

from __future__ import annotations

from ..core.visibility import restorable
from .host_rules import is_nd_license

# One statement per batch: lock the eligible rows (in id order, so overlapping batches never
# deadlock), name every requested id that is not eligible, and only when there is none change
# the rows, write the moderator's audit row and NOTIFY pmd_posts_changed. A single statement
# is atomic, so all-or-nothing needs no explicit transaction, and a batch costs one round trip
# (BEGIN, lock, update, audit, notify, COMMIT as separate statements were slower: see
# docs/benchmarks.md).
#
# $1 owner id, $2 post ids, $3 action name, $4 the moderator's user id (NULL for self-actions),
# $5 the new value (hide/unhide: bool; license: license id or NULL).
#
# The gate has no column of `p`, so PostgreSQL evaluates it once before the UPDATE scans
# anything; evaluating it reads all of `eligible`, so every row lock is taken, in id order,
# before any row changes. A row changed by a concurrent batch while we waited for its lock is
# re-checked against its new version (READ COMMITTED re-evaluation), so a post deleted
# meanwhile is named as ineligible. NOTIFY is transactional: listeners get it after commit,
# and never for a rejected batch (nothing changed, so nothing is announced).
_BATCH = """
WITH eligible AS (
    SELECT id FROM posts
    WHERE id = ANY($2::int[]) AND owner_id = $1 AND kind = 'artwork' AND {eligible}
    ORDER BY id
    FOR UPDATE
), missing AS (
    SELECT coalesce(array_agg(w.id ORDER BY w.id), '{{}}') AS ids
    FROM unnest($2::int[]) AS w(id)
    WHERE w.id NOT IN (SELECT id FROM eligible)
), gate AS (
    SELECT cardinality(ids) = 0 AND {precondition} AS ok, {precondition} AS precondition_ok
    FROM missing
), changed AS (
    -- The gate passes only when every requested id is eligible and locked, so the ids
    -- themselves select the rows (a join with `eligible` planned as a nested loop, O(n²)).
    -- `updated_at` is the host's "last changed" column (its ORM bumps it on every change);
    -- `metadata_modified_at` is what the host's players sync on (its own edit bumps it on
    -- every metadata change): without it a post hidden here stays on every player.
    UPDATE posts p SET {assign}, updated_at = now(), metadata_modified_at = now()
    WHERE p.id = ANY($2::int[]) AND {differs} AND (SELECT ok FROM gate)
    RETURNING p.id
), changed_ids AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids FROM changed
), audited AS (
    -- The host's audit_logs.id has no default (it sets uuid4 in code): name it here too.
    INSERT INTO audit_logs (id, actor_id, action, target_type, target_id, note)
    SELECT gen_random_uuid(), $4::int, 'pmd_batch_' || $3::text, 'user', $1::text,
           json_build_object('post_ids', $2::int[], 'changed', cardinality(c.ids))::text
    FROM changed_ids c
    WHERE $4::int IS NOT NULL AND (SELECT ok FROM gate)
    RETURNING 1
){moderation}, notified AS (
    SELECT pg_notify(
        'pmd_posts_changed',
        json_build_object('user_id', $1::int, 'action', $3::text, 'post_ids', c.ids)::text
    )
    FROM changed_ids c
    WHERE cardinality(c.ids) > 0
)
SELECT g.precondition_ok, m.ids AS missing, c.ids AS changed,
       (SELECT count(*) FROM audited) AS audited, (SELECT count(*) FROM notified) AS notified
       {columns}
FROM gate g, missing m, changed_ids c
"""
_ELIGIBLE_LIVE = "NOT deleted_by_user"
_ELIGIBLE_RESTORABLE = restorable("posts")
# The host has no deleted_by_mod column: a moderator's delete is remembered in the service's own
# `moderator_deletions`, and only a moderator may undo it.
_NOT_BY_MODERATOR = "NOT EXISTS (SELECT 1 FROM moderator_deletions m WHERE m.post_id = posts.id)"
_MARK_MODERATOR_DELETE = """, marked AS (
    INSERT INTO moderator_deletions (post_id, owner_id, deleted_by)
    SELECT id, $1::int, $4::int FROM changed
    ON CONFLICT (post_id) DO UPDATE SET deleted_by = EXCLUDED.deleted_by, deleted_at = now()
    RETURNING 1
)"""
_UNMARK_MODERATOR_DELETE = """, unmarked AS (
    DELETE FROM moderator_deletions WHERE post_id IN (SELECT id FROM changed) RETURNING 1
)"""


def _batch(
    *, eligible: str, assign: str, differs: str = "true", precondition: str = "true",
    moderation: str = "", columns: str = "",
) -> str:  # fmt: skip
    return _BATCH.format(
        eligible=eligible,
        precondition=precondition,
        assign=assign,
        differs=differs,
        moderation=moderation,
        columns=columns,
    )


SQL_BATCH_HIDE_BY_USER = _batch(
    eligible=_ELIGIBLE_LIVE,
    assign="hidden_by_user = $5::bool",
    differs="p.hidden_by_user <> $5::bool",
)
SQL_BATCH_HIDE_BY_MOD = _batch(
    eligible=_ELIGIBLE_LIVE,
    assign="hidden_by_mod = $5::bool",
    differs="p.hidden_by_mod <> $5::bool",
)
_DELETE = "deleted_by_user = true, deleted_by_user_date = now()"
_RESTORE = "deleted_by_user = false, deleted_by_user_date = NULL"
SQL_BATCH_DELETE_BY_USER = _batch(eligible=_ELIGIBLE_LIVE, assign=_DELETE)
SQL_BATCH_DELETE_BY_MOD = _batch(
    eligible=_ELIGIBLE_LIVE, assign=_DELETE, moderation=_MARK_MODERATOR_DELETE
)
# A post restored already (not deleted) is eligible and left as it is: a repeated restore is
# idempotent, as a repeated hide is. A deleted one must be inside the restore window.
SQL_BATCH_RESTORE_BY_USER = _batch(
    eligible=f"(NOT deleted_by_user OR ({_ELIGIBLE_RESTORABLE} AND {_NOT_BY_MODERATOR}))",
    assign=_RESTORE,
    differs="p.deleted_by_user",
)
SQL_BATCH_RESTORE_BY_MOD = _batch(
    eligible=f"(NOT deleted_by_user OR {_ELIGIBLE_RESTORABLE})",
    assign=_RESTORE,
    differs="p.deleted_by_user",
    moderation=_UNMARK_MODERATOR_DELETE,
)
# An unknown license refuses the batch too (`precondition_ok` false); the row carries the
# license's identifier for the message the host's page parses. A NoDerivatives license turns
# remixable off in the same statement (the host's rule L5), and a post already under it but
# still remixable (written before the rule) is corrected too.
_TO_ND = is_nd_license("$5::int")
SQL_BATCH_LICENSE = _batch(
    eligible=_ELIGIBLE_LIVE,
    precondition="($5::int IS NULL OR EXISTS (SELECT 1 FROM licenses WHERE id = $5::int))",
    assign=f"license_id = $5::int, remixable = p.remixable AND NOT {_TO_ND}",
    differs=f"(p.license_id IS DISTINCT FROM $5::int OR (p.remixable AND {_TO_ND}))",
    columns=", (SELECT identifier FROM licenses WHERE id = $5::int) AS license_identifier",
)
SQL_DELETED_BY_MODERATOR = """
SELECT coalesce(array_agg(post_id ORDER BY post_id), '{}') FROM moderator_deletions
WHERE post_id = ANY($1::int[]) AND owner_id = $2
"""
