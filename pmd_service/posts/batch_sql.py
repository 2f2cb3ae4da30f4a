"""The statements of batch actions: one template, one statement per action, caller kind and way
of naming the posts (a list of ids, or a filter and the count the person approved)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.visibility import holds_hash, restorable
from .filters import PARAMS as FILTER_PARAMS
from .filters import match_digest, predicate
from .host_rules import MAX_MOD_TAGS_PER_POST, MAX_TAGS_PER_POST, is_nd_license
from .live import announce
from .undo import DROP_HISTORY, KEPT_HISTORY_BYTES

# One statement per batch: lock the eligible rows (in id order, so overlapping batches never
# deadlock), name every requested id that is not eligible and every eligible post the action
# may not apply to, and only when there is none (and, for a filter, when the matching posts
# are as many as approved) change the rows, remember their previous values for undo, write the
# moderator's audit row and the stream's `posts_changed` event (posts/live.py). A single
# statement is atomic, so all-or-nothing needs no explicit transaction, and a batch costs one
# round trip (BEGIN, lock, update, audit, notify, COMMIT as separate statements were slower:
# see docs/benchmarks.md).
# The undo history keeps only what the action changed (migrations/0013_compact_undo.sql), and
# each owner's kept history within KEPT_HISTORY_BYTES: older actions' history is dropped.
#
# By ids: $1 owner id, $2 post ids, $3 action name, $4 the moderator's user id (NULL for
# self-actions), then the action's values. By filter: $1 owner id, $2 the approved count, $3,
# $4 as above, $5 the most posts a request may change, $6 the filter as JSON (for the audit
# row), $7 the approved set's digest (NULL: the count alone), $8.. the filter's keys
# (filters.py), then the action's values.
#
# The gate has no column of `p`, so PostgreSQL evaluates it once before the UPDATE scans
# anything; evaluating it reads all of `eligible`, so every row lock is taken, in id order,
# before any row changes. A row changed by a concurrent batch while we waited for its lock is
# re-checked against its new version (READ COMMITTED re-evaluation), so a post deleted
# meanwhile is named as ineligible (by filter: no longer counted). `eligible` holds the rows as
# they were before this statement's UPDATE (data-modifying CTEs see one snapshot): the values
# undo puts back. The event commits with the change (its NOTIFY rings after commit), and a
# rejected batch has none (nothing changed, so nothing is announced).
_BATCH = """
WITH eligible AS (
    SELECT p.id, p.hidden_by_user, p.hidden_by_mod, p.deleted_by_user, p.deleted_by_user_date,
           p.license_id, p.remixable, p.hashtags, p.public_sqid, p.hash, {refuse} AS refused{extra}
    FROM posts p
    WHERE {chosen} AND p.owner_id = $1 AND p.kind = 'artwork' AND {eligible}
    ORDER BY p.id
    FOR UPDATE
), eligible_ids AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids, count(*) AS n FROM eligible
), missing AS (
    {missing}
), {refused}, gate AS (
    SELECT cardinality(m.ids) = 0 AND cardinality(r.ids) = 0 AND {counted} AND {precondition}
               AS ok,
           {precondition} AS precondition_ok
    FROM missing m, refused r, eligible_ids e
), changed AS (
    -- The gate passes only when every requested post is eligible and locked, so their ids
    -- select the rows (a join with `eligible` planned as a nested loop, O(n²)).
    -- `updated_at` is the host's "last changed" column (its ORM bumps it on every change);
    -- `metadata_modified_at` is what the host's players sync on (its own edit bumps it on
    -- every metadata change): without it a post hidden here stays on every player.
    UPDATE posts p SET {assign}, updated_at = now(), metadata_modified_at = now()
    WHERE p.id = ANY({targets}) AND {differs} AND (SELECT ok FROM gate)
    RETURNING p.id
), changed_ids AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids FROM changed
), prior AS (
    SELECT {prior} FROM eligible e WHERE e.id IN (SELECT id FROM changed)
), logged AS (
    INSERT INTO bulk_actions (owner_id, actor_id, action, changed_count, post_ids,
                              history_bytes{history_columns})
    SELECT $1::int, $4::int, $3::text, cardinality(c.ids), c.ids,
           pg_column_size(c.ids) + pg_column_size(h){history_values}
    FROM changed_ids c, prior h
    WHERE cardinality(c.ids) > 0
    RETURNING id, history_bytes
), trimmed AS (
    UPDATE bulk_actions b SET {drop_history}, dropped_at = now()
    FROM (SELECT id, sum(history_bytes) OVER (ORDER BY created_at DESC, id DESC) AS newer
          FROM bulk_actions
          WHERE owner_id = $1::int AND dropped_at IS NULL AND undone_at IS NULL) o
    WHERE b.id = o.id AND o.newer + (SELECT history_bytes FROM logged) > {kept_bytes}
    RETURNING 1
), audited AS (
    -- The host's audit_logs.id has no default (it sets uuid4 in code): name it here too.
    INSERT INTO audit_logs (id, actor_id, action, target_type, target_id, note)
    SELECT gen_random_uuid(), $4::int, 'pmd_batch_' || $3::text, 'user', $1::text,
           {note}::text
    FROM changed_ids c, eligible_ids e
    WHERE $4::int IS NOT NULL AND (SELECT ok FROM gate)
    RETURNING 1
){moderation}, notified AS (
    SELECT {announce} FROM changed_ids c WHERE cardinality(c.ids) > 0
)
SELECT g.ok, g.precondition_ok, m.ids AS missing, r.ids AS refused, e.n AS matched,
       cardinality(c.ids) AS changed, (SELECT id FROM logged) AS action_id,
       (SELECT count(*) FROM trimmed) AS trimmed,
       (SELECT count(*) FROM audited) AS audited, (SELECT count(*) FROM notified) AS notified,
       {reported} AS match_digest
       {columns}
FROM gate g, missing m, refused r, eligible_ids e, changed_ids c
"""


@dataclass(frozen=True)
class _Mode:
    chosen: str
    missing: str
    counted: str
    targets: str
    note: str
    reported: str
    first_value: int


_BY_IDS = _Mode(
    chosen="p.id = ANY($2::int[])",
    missing="""SELECT coalesce(array_agg(w.id ORDER BY w.id), '{}') AS ids
    FROM unnest($2::int[]) AS w(id)
    WHERE w.id NOT IN (SELECT id FROM eligible)""",
    counted="true",
    targets="$2::int[]",
    note="json_build_object('post_ids', $2::int[], 'changed', cardinality(c.ids))",
    reported="NULL::text",
    first_value=5,
)
_DIGEST = f"(SELECT {match_digest('x.id')} FROM unnest(e.ids) AS x(id))"
_BY_FILTER = _Mode(
    chosen=predicate(8),
    missing="SELECT '{}'::int[] AS ids",
    # The person approved `expect_count` posts: no more, no fewer, and within the limit; and
    # when they sent `expect_digest` ($7), those very posts.
    counted=f"e.n = $2::int AND e.n <= $5::int AND ($7::text IS NULL OR {_DIGEST} = $7::text)",
    targets="(SELECT ids FROM eligible_ids)::int[]",
    note="json_build_object('filter', $6::text::json, 'count', e.n, 'changed', cardinality(c.ids))",
    reported=_DIGEST,
    first_value=8 + FILTER_PARAMS,
)

_ELIGIBLE_LIVE = "NOT p.deleted_by_user"
_ELIGIBLE_RESTORABLE = restorable("p")
# The host has no deleted_by_mod column: a moderator's delete is remembered in the service's own
# `moderator_deletions`, and only a moderator may undo it.


def deleted_by_moderator(alias: str) -> str:
    """SQL: the post `alias` was deleted by a moderator (only a moderator may restore it)."""
    return f"EXISTS (SELECT 1 FROM moderator_deletions m WHERE m.post_id = {alias}.id)"


_BY_MODERATOR = deleted_by_moderator("p")
_NOT_BY_MODERATOR = f"NOT {_BY_MODERATOR}"
_MARK_MODERATOR_DELETE = """, marked AS (
    INSERT INTO moderator_deletions (post_id, owner_id, deleted_by)
    SELECT id, $1::int, $4::int FROM changed
    ON CONFLICT (post_id) DO UPDATE SET deleted_by = EXCLUDED.deleted_by, deleted_at = now()
    RETURNING 1
)"""
_UNMARK_MODERATOR_DELETE = """, unmarked AS (
    DELETE FROM moderator_deletions WHERE post_id IN (SELECT id FROM changed) RETURNING 1
)"""


@dataclass(frozen=True)
class _History:
    """What undo needs of an action beyond the changed posts' ids: values written to them all
    (`wrote`: column -> SQL) and, per post in id order, prior values (`prior`: column -> an
    aggregate over `eligible e`), read from `eligible`'s `extra` columns where needed."""

    wrote: dict[str, str] = field(default_factory=dict)
    prior: dict[str, str] = field(default_factory=dict)
    extra: str = ""


_REFUSED = """refused AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{}') AS ids FROM eligible WHERE refused
)"""


def _batch(
    mode: _Mode,
    *,
    eligible: str,
    assign: str,
    differs: str = "true",
    precondition: str = "true",
    refuse: str = "false",
    refused: str = _REFUSED,
    moderation: str = "",
    columns: str = "",
    history: _History = _History(),
) -> str:
    values = {f"v{i}": f"${mode.first_value + i}" for i in range(2)}
    prior = ", ".join(f"{sql} AS {name}" for name, sql in history.prior.items())
    kept = {**history.wrote, **{name: f"h.{name}" for name in history.prior}}
    return _BATCH.format(
        chosen=mode.chosen,
        missing=mode.missing,
        counted=mode.counted,
        targets=mode.targets,
        note=mode.note,
        announce=announce("$1::int", "$3::text", "c.ids", "(SELECT id FROM logged)"),
        reported=mode.reported,
        refused=refused,
        eligible=eligible,
        precondition=precondition.format(**values),
        refuse=refuse.format(**values),
        assign=assign.format(**values),
        differs=differs.format(**values),
        moderation=moderation,
        columns=columns.format(**values),
        extra=history.extra.format(**values),
        prior=(prior or "count(*) AS n").format(**values),
        history_columns="".join(f", {name}" for name in kept),
        history_values="".join(f", {sql}" for sql in kept.values()).format(**values),
        drop_history=DROP_HISTORY,
        kept_bytes=KEPT_HISTORY_BYTES,
    )


def _both(**kw: Any) -> tuple[str, str]:
    """The statement by ids and by filter."""
    return _batch(_BY_IDS, **kw), _batch(_BY_FILTER, **kw)


_DELETE = "deleted_by_user = true, deleted_by_user_date = now()"
_RESTORE = "deleted_by_user = false, deleted_by_user_date = NULL"
# What undo needs, per action (a delete's time is its action's `created_at`).
_WROTE_FLAG = _History(wrote={"wrote_flag": "{v0}::bool"})
_RESTORED = _History(
    prior={
        "prior_dates": "array_agg(e.deleted_by_user_date ORDER BY e.id)",
        "prior_marks": "array_agg(e.mark ORDER BY e.id)",
    },
    extra=", (SELECT m.deleted_by FROM moderator_deletions m WHERE m.post_id = p.id) AS mark",
)
SQL_BATCH_HIDE_BY_USER, SQL_FILTER_HIDE_BY_USER = _both(
    eligible=_ELIGIBLE_LIVE,
    assign="hidden_by_user = {v0}::bool",
    differs="p.hidden_by_user <> {v0}::bool",
    history=_WROTE_FLAG,
)
SQL_BATCH_HIDE_BY_MOD, SQL_FILTER_HIDE_BY_MOD = _both(
    eligible=_ELIGIBLE_LIVE,
    assign="hidden_by_mod = {v0}::bool",
    differs="p.hidden_by_mod <> {v0}::bool",
    history=_WROTE_FLAG,
)
SQL_BATCH_DELETE_BY_USER, SQL_FILTER_DELETE_BY_USER = _both(eligible=_ELIGIBLE_LIVE, assign=_DELETE)
SQL_BATCH_DELETE_BY_MOD, SQL_FILTER_DELETE_BY_MOD = _both(
    eligible=_ELIGIBLE_LIVE, assign=_DELETE, moderation=_MARK_MODERATOR_DELETE
)
# By ids, a post restored already (not deleted) is eligible and left as it is: a repeated
# restore is idempotent, as a repeated hide is. A deleted one must be inside the restore window.
# By filter, the posts restored are those of the deleted listing that match (a live post is
# not "matched" by a restore), counted as the listing counts them: a post a moderator deleted
# is matched and, for its owner, refused (named), so count and action never disagree.
#
# The host's restore rule (its undelete plan): a deleted post whose artwork hash a live post
# holds (uq_posts_hash_active) is refused, and so are deleted posts of one restore that share a
# hash (only one of them could be live; each names another). `clashes` names them with the
# post that holds, or would hold, the artwork; the restore changes nothing then. The twins are
# found by grouping, not by a join of `eligible` with itself (O(n²) on a filter of 10,000).
_CLASHES = f"""twins AS (
    SELECT hash, array_agg(id ORDER BY id) AS ids FROM eligible
    WHERE deleted_by_user AND hash IS NOT NULL
    GROUP BY hash HAVING count(*) > 1
), clashes AS (
    SELECT e.id, e.public_sqid, coalesce(l.id, t.id) AS held_id,
           coalesce(l.public_sqid, t.public_sqid) AS held_sqid, l.id IS NOT NULL AS live
    FROM eligible e
    LEFT JOIN LATERAL (
        SELECT h.id, h.public_sqid FROM posts h WHERE {holds_hash("e", "h")} LIMIT 1
    ) l ON true
    LEFT JOIN twins g ON g.hash = e.hash
    LEFT JOIN eligible t ON t.id = CASE WHEN e.id = g.ids[1] THEN g.ids[2] ELSE g.ids[1] END
    WHERE e.deleted_by_user AND e.hash IS NOT NULL AND (l.id IS NOT NULL OR g.hash IS NOT NULL)
), refused AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids
    FROM (SELECT id FROM eligible WHERE refused UNION SELECT id FROM clashes) x
)"""
_CLASHES_REPORTED = """, (SELECT json_agg(json_build_object(
        'post_id', c.id, 'public_sqid', c.public_sqid, 'held_by', json_build_object(
            'post_id', c.held_id, 'public_sqid', c.held_sqid, 'live', c.live)) ORDER BY c.id)
    FROM clashes c) AS clashes"""


def _restore(mode: _Mode, eligible: str, **kw: str) -> str:
    return _batch(
        mode,
        eligible=eligible,
        assign=_RESTORE,
        differs="p.deleted_by_user",
        refused=_CLASHES,
        columns=_CLASHES_REPORTED,
        history=_RESTORED,
        **kw,
    )


_RESTORABLE_BY_USER = f"({_ELIGIBLE_RESTORABLE} AND {_NOT_BY_MODERATOR})"
SQL_BATCH_RESTORE_BY_USER = _restore(_BY_IDS, f"(NOT p.deleted_by_user OR {_RESTORABLE_BY_USER})")
SQL_FILTER_RESTORE_BY_USER = _restore(_BY_FILTER, f"({_ELIGIBLE_RESTORABLE})", refuse=_BY_MODERATOR)
SQL_BATCH_RESTORE_BY_MOD = _restore(
    _BY_IDS,
    f"(NOT p.deleted_by_user OR {_ELIGIBLE_RESTORABLE})",
    moderation=_UNMARK_MODERATOR_DELETE,
)
SQL_FILTER_RESTORE_BY_MOD = _restore(
    _BY_FILTER, f"({_ELIGIBLE_RESTORABLE})", moderation=_UNMARK_MODERATOR_DELETE
)
# An unknown license refuses the batch too (`precondition_ok` false); the row carries the
# license's identifier for the message the host's page parses. A NoDerivatives license turns
# remixable off in the same statement (the host's rule L5), and a post already under it but
# still remixable (written before the rule) is corrected too.
_TO_ND = is_nd_license("{v0}::int")
SQL_BATCH_LICENSE, SQL_FILTER_LICENSE = _both(
    eligible=_ELIGIBLE_LIVE,
    precondition="({v0}::int IS NULL OR EXISTS (SELECT 1 FROM licenses WHERE id = {v0}::int))",
    assign=f"license_id = {{v0}}::int, remixable = p.remixable AND NOT {_TO_ND}",
    differs=f"(p.license_id IS DISTINCT FROM {{v0}}::int OR (p.remixable AND {_TO_ND}))",
    columns=", (SELECT identifier FROM licenses WHERE id = {v0}::int) AS license_identifier",
    history=_History(
        wrote={"wrote_license": "{v0}::int"},
        prior={
            "prior_licenses": "array_agg(e.license_id ORDER BY e.id)",
            "prior_remixable": "array_agg(e.remixable ORDER BY e.id)",
        },
    ),
)
# Tags: {v0} to add, {v1} to remove, both normalised. The artist's own: a moderator's tag is
# never removed (the host's own edit re-merges them), and a post whose own tags would pass the
# host's cap is refused. A moderator's go where the host keeps them (its PUT mod-hashtags):
# added to `mod_hashtags` and `hashtags`, removed from both, at most MAX_MOD_TAGS_PER_POST.
_TAGS_AFTER = "pmd_tags_after(p.hashtags, p.mod_hashtags, {v0}::text[], {v1}::text[])"
_MOD_TAGS_AFTER = "pmd_tags_after(p.hashtags, '{{}}', {v0}::text[], {v1}::text[])"
_MOD_OWN_AFTER = "pmd_tags_after(p.mod_hashtags, '{{}}', {v0}::text[], {v1}::text[])"
_TAG_LISTS = {"tags_add": "{v0}::text[]", "tags_remove": "{v1}::text[]"}
_DIFF = "pmd_tags_diff(e.{before}, e.{after}, {{v0}}::text[], {{v1}}::text[])"
SQL_BATCH_TAGS, SQL_FILTER_TAGS = _both(
    eligible=_ELIGIBLE_LIVE,
    refuse=f"pmd_artist_tag_count({_TAGS_AFTER}, p.mod_hashtags) > {MAX_TAGS_PER_POST}",
    assign=f"hashtags = {_TAGS_AFTER}",
    differs=f"p.hashtags IS DISTINCT FROM {_TAGS_AFTER}",
    history=_History(
        wrote=_TAG_LISTS,
        prior={
            "tag_changes": "jsonb_agg(jsonb_build_object('h', "
            + _DIFF.format(before="hashtags", after="tags_after")
            + ") ORDER BY e.id)",
            "tags_after": "array_agg(md5(e.tags_after::text)::uuid ORDER BY e.id)",
        },
        extra=f", {_TAGS_AFTER} AS tags_after",
    ),
)
SQL_BATCH_MOD_TAGS, SQL_FILTER_MOD_TAGS = _both(
    eligible=_ELIGIBLE_LIVE,
    refuse=f"cardinality({_MOD_OWN_AFTER}) > {MAX_MOD_TAGS_PER_POST}",
    assign=f"hashtags = {_MOD_TAGS_AFTER}, mod_hashtags = {_MOD_OWN_AFTER}",
    differs=(
        f"(p.hashtags IS DISTINCT FROM {_MOD_TAGS_AFTER}"
        f" OR p.mod_hashtags IS DISTINCT FROM {_MOD_OWN_AFTER})"
    ),
    history=_History(
        wrote=_TAG_LISTS,
        prior={
            "tag_changes": "jsonb_agg(jsonb_build_object('h', "
            + _DIFF.format(before="hashtags", after="tags_after")
            + ", 'm', "
            + _DIFF.format(before="mod_hashtags", after="mod_after")
            + ") ORDER BY e.id)",
            "tags_after": "array_agg(md5(e.tags_after::text || e.mod_after::text)::uuid"
            " ORDER BY e.id)",
        },
        extra=f", p.mod_hashtags, {_MOD_TAGS_AFTER} AS tags_after, {_MOD_OWN_AFTER} AS mod_after",
    ),
)
# Remix permission: a NoDerivatives post is refused `true` (rule L5), never silently skipped.
SQL_BATCH_REMIXABLE, SQL_FILTER_REMIXABLE = _both(
    eligible=_ELIGIBLE_LIVE,
    refuse=f"({{v0}}::bool AND {is_nd_license('p.license_id')})",
    assign="remixable = {v0}::bool",
    differs="p.remixable <> {v0}::bool",
    history=_WROTE_FLAG,
)
SQL_DELETED_BY_MODERATOR = """
SELECT coalesce(array_agg(post_id ORDER BY post_id), '{}') FROM moderator_deletions
WHERE post_id = ANY($1::int[]) AND owner_id = $2
"""
