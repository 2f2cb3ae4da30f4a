"""The bulk actions, one record each: a new action is one record here."""

from __future__ import annotations

from dataclasses import replace

import asyncpg

from ...core.codes import Code
from ...core.problems import FieldError, ProblemError, bad_request
from ...core.visibility import holds_hash, restorable
from ...host.eligibility import posts_refused
from .action_shape import Body, BulkAction, Caller, History, PageWords, Part, Refusal, Undo
from .host_rules import (
    MAX_MOD_TAGS_PER_POST,
    MAX_TAG_LENGTH,
    MAX_TAGS_PER_POST,
    ND_LICENSE_IDENTIFIERS,
    is_nd_license,
    normalize_hashtags,
)
from .restore_rule import artwork_held

_ELIGIBLE_RESTORABLE = restorable("p")


def _refusal(why: tuple[str, str], fix: str, reason: str, code: Code) -> Refusal:
    """The 400 naming the refused posts: `why` for one post and for several."""

    def refused(ids: list[int], row: asyncpg.Record) -> ProblemError:
        return posts_refused(
            ids,
            why[0] if len(ids) == 1 else why[1],
            f"To go on, {fix}.",
            "refused",
            code=code,
            extra={"invalid_post_ids": ids, "reason": reason},
        )

    return refused


# --- hide, unhide: {v0} the flag written (true: hide), the artist's or a moderator's column.
_WROTE_FLAG = History(wrote={"wrote_flag": "{v0}::bool"})


def _flag(
    column: str, refuse: str = "false", refusal: Refusal | None = None, **undo: str
) -> Caller:
    """Writes the flag `column` (remixable too); `undo`: the undo's own `allowed`, `refused`."""
    return Caller.alike(
        Part(
            refuse=refuse,
            assign=f"{column} = {{v0}}::bool",
            differs=f"p.{column} <> {{v0}}::bool",
            history=_WROTE_FLAG,
        ),
        Undo(holds=f"p.{column} = a.wrote_flag", assign=f"{column} = NOT a.wrote_flag", **undo),
        refusal,
    )


HIDE = BulkAction(
    name="hide",
    verb="hide",
    past="Hidden",
    already="already hidden",
    undone="hide",
    writes=("hidden_by_user", "hidden_by_mod"),
    owner=_flag("hidden_by_user"),
    moderator=_flag("hidden_by_mod"),
    page=PageWords(doing="Hiding", did="Hid"),
    fixed=(True,),
)
UNHIDE = replace(
    HIDE,
    name="unhide",
    verb="unhide",
    past="Unhidden",
    already="already visible",
    undone="unhide",
    page=PageWords(doing="Unhiding", did="Unhid"),
    fixed=(False,),
)


# --- delete, restore: a moderator's delete is remembered in `moderator_deletions`.
def deleted_by_moderator(alias: str) -> str:
    """SQL: the post `alias` was deleted by a moderator (only a moderator may restore it)."""
    return f"EXISTS (SELECT 1 FROM moderator_deletions m WHERE m.post_id = {alias}.id)"


_BY_MODERATOR = deleted_by_moderator("p")
_MARK_MODERATOR_DELETE = """, marked AS (
    INSERT INTO moderator_deletions (post_id, owner_id, deleted_by)
    SELECT id, :owner::int, :actor::int FROM changed
    ON CONFLICT (post_id) DO UPDATE SET deleted_by = EXCLUDED.deleted_by, deleted_at = now()
    RETURNING 1
)"""
_UNMARK_MODERATOR_DELETE = """, unmarked AS (
    DELETE FROM moderator_deletions WHERE post_id IN (SELECT id FROM changed) RETURNING 1
)"""
# Deleting frees the artwork's hash (uq_posts_hash_active) and starts the restore window.
_DELETE = "deleted_by_user = true, deleted_by_user_date = now()"
_RESTORE = "deleted_by_user = false, deleted_by_user_date = NULL"
# The undo of a delete keeps the restore rule; another user's post is not named (NULL id, sqid).
_HELD_ARTWORKS = f"""SELECT p.id, p.public_sqid,
           CASE WHEN h.owner_id = p.owner_id THEN h.id END AS held_id,
           CASE WHEN h.owner_id = p.owner_id THEN h.public_sqid END AS held_sqid
    FROM locked r JOIN posts p ON p.id = r.post_id
    JOIN LATERAL (SELECT h.id, h.public_sqid, h.owner_id FROM posts h
                  WHERE {holds_hash("p", "h")} LIMIT 1) h ON true
    WHERE r.left_why IS NULL"""
_UNDO_DELETE = Undo(
    holds="p.deleted_by_user AND p.deleted_by_user_date = a.created_at",  # its action's time
    assign=_RESTORE,
    marks=""", unmarked AS (
    DELETE FROM moderator_deletions WHERE post_id IN (SELECT id FROM restored) RETURNING 1
)""",
    clashes=_HELD_ARTWORKS,
)
DELETE = BulkAction(
    name="delete",
    verb="delete",
    past="Deleted",
    undone="delete",
    writes=("deleted_by_user", "deleted_by_user_date"),
    owner=Caller.alike(Part(assign=_DELETE), _UNDO_DELETE),
    moderator=Caller.alike(Part(assign=_DELETE, moderation=_MARK_MODERATOR_DELETE), _UNDO_DELETE),
    page=PageWords(doing="Deleting", did="Deleted", already="already deleted"),
)

# Clashing posts (an artwork held or shared) refuse a restore by ids and stay deleted by filter.
_CLASHES = f"""twins AS (
    SELECT hash, array_agg(id ORDER BY id) AS ids FROM eligible
    WHERE deleted_by_user AND hash IS NOT NULL AND NOT refused
    GROUP BY hash HAVING count(*) > 1
), clashes AS (
    -- Another user's live post is not named (its id and sqid stay NULL): the caller may not see it.
    SELECT e.id, e.public_sqid,
           CASE WHEN l.id IS NULL THEN t.id WHEN l.owner_id = :owner::int THEN l.id END AS held_id,
           CASE WHEN l.id IS NULL THEN t.public_sqid
                WHEN l.owner_id = :owner::int THEN l.public_sqid END AS held_sqid,
           l.id IS NOT NULL AS live
    FROM eligible e
    LEFT JOIN LATERAL (
        SELECT h.id, h.public_sqid, h.owner_id FROM posts h WHERE {holds_hash("e", "h")} LIMIT 1
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
    FROM clashes c) AS clashes,
    (SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM eligible WHERE refused) AS by_moderator"""
# A delete's time is its action's `created_at`; a restore keeps each post's, and its mark.
_RESTORED = History(
    prior={
        "prior_dates": "array_agg(e.deleted_by_user_date ORDER BY e.id)",
        "prior_marks": "array_agg(e.mark ORDER BY e.id)",
    },
    extra=", (SELECT m.deleted_by FROM moderator_deletions m WHERE m.post_id = p.id) AS mark",
)


# The marks the restore removed, exactly: a post its owner deleted gets none back.
_UNDO_RESTORE = Undo(
    holds="NOT p.deleted_by_user",
    assign="deleted_by_user = true, deleted_by_user_date = r.date",
    marks=""", marked AS (
    INSERT INTO moderator_deletions (post_id, owner_id, deleted_by)
    SELECT r.post_id, a.owner_id, r.mark FROM locked r, act a
    WHERE r.mark IS NOT NULL AND r.post_id IN (SELECT id FROM restored)
    ON CONFLICT (post_id) DO UPDATE SET deleted_by = EXCLUDED.deleted_by
    RETURNING 1
)""",
)


def _artwork_held(ids: list[int], row: asyncpg.Record) -> ProblemError:
    return artwork_held(row["clashes"])


def _restorer(by_ids: str, refuse: str = "false", moderation: str = "") -> Caller:
    """A restore by ids of the deleted posts `by_ids` allows; by filter, `refuse` posts left."""
    part = Part(
        eligible=f"(NOT p.deleted_by_user OR {by_ids})",
        assign=_RESTORE,
        differs="p.deleted_by_user",
        refused=_CLASHES,
        moderation=moderation,
        columns=_CLASHES_REPORTED,
        history=_RESTORED,
    )
    by_filter = replace(
        part, eligible=f"({_ELIGIBLE_RESTORABLE})", refuse=refuse, skip_refused=True
    )
    return Caller(part, by_filter, _UNDO_RESTORE, _artwork_held)


RESTORE = BulkAction(
    name="restore",
    verb="restore",
    past="Restored",
    already="not deleted",
    undone="restore",
    writes=("deleted_by_user", "deleted_by_user_date"),
    owner=_restorer(f"({_ELIGIBLE_RESTORABLE} AND NOT {_BY_MODERATOR})", refuse=_BY_MODERATOR),
    moderator=_restorer(_ELIGIBLE_RESTORABLE, moderation=_UNMARK_MODERATOR_DELETE),
    page=PageWords(doing="Restoring", did="Restored", already="already restored"),
    restores=True,
)


# --- license: {v0} the license id (NULL: none); a NoDerivatives one turns remixable off (L5).
_TO_ND = is_nd_license("{v0}::int")
_LICENSE = Caller.alike(
    Part(
        precondition="({v0}::int IS NULL OR EXISTS (SELECT 1 FROM licenses WHERE id = {v0}::int))",
        assign=f"license_id = {{v0}}::int, remixable = p.remixable AND NOT {_TO_ND}",
        differs=f"(p.license_id IS DISTINCT FROM {{v0}}::int OR (p.remixable AND {_TO_ND}))",
        columns=", (SELECT identifier FROM licenses WHERE id = {v0}::int) AS license_identifier",
        history=History(
            wrote={"wrote_license": "{v0}::int"},
            prior={
                "prior_licenses": "array_agg(e.license_id ORDER BY e.id)",
                "prior_remixable": "array_agg(e.remixable ORDER BY e.id)",
            },
        ),
    ),
    Undo(
        holds="p.license_id IS NOT DISTINCT FROM a.wrote_license"
        f" AND p.remixable = (r.remixable AND NOT {is_nd_license('a.wrote_license')})",
        assign=f"license_id = r.license, remixable = r.remixable AND NOT {is_nd_license('r.license')}",
        allowed="r.license IS NULL OR EXISTS (SELECT 1 FROM licenses l WHERE l.id = r.license)",
        refused="license gone",
    ),
)


def _license_said(row: asyncpg.Record, values: tuple[object, ...]) -> str:
    # The host's page parses `/Changed license to (\S+)/` out of this sentence: keep its form.
    if values[0] is None:
        return "Removed license from"
    return f"Changed license to {row['license_identifier']} for"


def _unknown_license(values: tuple[object, ...]) -> ProblemError:
    return bad_request(
        f"There is no license with id {values[0]}; pick one of the site's licenses "
        "or send null to clear it.",
        slug="unknown-license",
        errors=[FieldError(field="license_id", message="unknown license")],
        code=Code.UNKNOWN_LICENSE,
    )


LICENSE = BulkAction(
    name="license",
    verb="relicense",
    past=_license_said,
    undone="license change",
    writes=("license_id", "remixable"),
    owner=_LICENSE,
    moderator=_LICENSE,
    page=PageWords(
        doing="Changing the license of",
        did="Changed the license of",
        done="relicensed",
        already="already had that license",
    ),
    own_endpoint=True,
    unmet=_unknown_license,
)


# --- tags: {v0} to add, {v1} to remove; an artist's never touch a moderator's tag.
def _tags_of(body: Body) -> tuple[object, ...]:
    """The normalised tags to add and remove, or a 400 naming what is wrong."""
    added, removed = normalize_hashtags(body.add), normalize_hashtags(body.remove)
    for field, tags in (("add", added), ("remove", removed)):
        long = [t for t in tags if len(t) > MAX_TAG_LENGTH]
        if long:
            raise bad_request(
                f"`{field}` takes tags of at most {MAX_TAG_LENGTH} characters; "
                f"{long[0][:40]!r} is longer.",
                slug="invalid-tags",
                errors=[FieldError(field=field, message="tag too long")],
                code=Code.INVALID_TAGS,
            )
    if not added and not removed:
        raise bad_request(
            "A `tags` action needs tags in `add`, `remove` or both.",
            slug="invalid-tags",
            errors=[FieldError(field="add", message="no tags to add or remove")],
            code=Code.INVALID_TAGS,
        )
    both = [t for t in added if t in removed]
    if both:
        raise bad_request(
            f"`add` and `remove` both name {both[0]!r}; name each tag in one of them.",
            slug="invalid-tags",
            errors=[FieldError(field="remove", message=f"also in add: {both[0]}")],
            code=Code.INVALID_TAGS,
        )
    return added, removed


_TAGS_AFTER = "pmd_tags_after(p.hashtags, p.mod_hashtags, {v0}::text[], {v1}::text[])"
_MOD_TAGS_AFTER = "pmd_tags_after(p.hashtags, '{{}}', {v0}::text[], {v1}::text[])"
_MOD_OWN_AFTER = "pmd_tags_after(p.mod_hashtags, '{{}}', {v0}::text[], {v1}::text[])"
_TAG_LISTS = {"tags_add": "{v0}::text[]", "tags_remove": "{v1}::text[]"}
_DIFF = "pmd_tags_diff(e.{before}, e.{after}, {{v0}}::text[], {{v1}}::text[])"
_ARTIST_TAGS = Part(
    refuse=f"pmd_artist_tag_count({_TAGS_AFTER}, p.mod_hashtags) > {MAX_TAGS_PER_POST}",
    assign=f"hashtags = {_TAGS_AFTER}",
    differs=f"p.hashtags IS DISTINCT FROM {_TAGS_AFTER}",
    history=History(
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
_MODERATOR_TAGS = Part(
    refuse=f"cardinality({_MOD_OWN_AFTER}) > {MAX_MOD_TAGS_PER_POST}",
    assign=f"hashtags = {_MOD_TAGS_AFTER}, mod_hashtags = {_MOD_OWN_AFTER}",
    differs=(
        f"(p.hashtags IS DISTINCT FROM {_MOD_TAGS_AFTER}"
        f" OR p.mod_hashtags IS DISTINCT FROM {_MOD_OWN_AFTER})"
    ),
    history=History(
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
_MOD_TAGS_BEFORE = "pmd_tags_undo(p.mod_hashtags, r.diff -> 'm', a.tags_add, a.tags_remove, '{}')"
TAGS = BulkAction(
    name="tags",
    verb="retag",
    past="Retagged",
    undone="tag change",
    writes=("hashtags", "mod_hashtags"),
    owner=Caller.alike(
        _ARTIST_TAGS,
        Undo(
            holds="md5(p.hashtags::text)::uuid = r.after",
            assign="hashtags = pmd_tags_undo(p.hashtags, r.diff -> 'h', a.tags_add,"
            " a.tags_remove, p.mod_hashtags)",
        ),
        _refusal(
            (f"would carry more than {MAX_TAGS_PER_POST} tags of the artist's own",) * 2,
            "remove some of their tags first, or leave them out",
            "tag-cap",
            Code.TOO_MANY_TAGS,
        ),
    ),
    moderator=Caller.alike(
        _MODERATOR_TAGS,
        Undo(
            holds="md5(p.hashtags::text || p.mod_hashtags::text)::uuid = r.after",
            assign=f"mod_hashtags = {_MOD_TAGS_BEFORE}, hashtags = pmd_tags_undo(p.hashtags,"
            f" r.diff -> 'h', a.tags_add, a.tags_remove, {_MOD_TAGS_BEFORE})",
        ),
        _refusal(
            (f"would carry more than {MAX_MOD_TAGS_PER_POST} moderator tags",) * 2,
            "remove some of their moderator tags first, or leave them out",
            "tag-cap",
            Code.TOO_MANY_TAGS,
        ),
    ),
    page=PageWords(doing="Retagging", did="Retagged", already="already had those tags"),
    values=_tags_of,
)


# --- remixable: {v0} the new permission; a NoDerivatives post refuses `true` (rule L5).
def _remixable_of(body: Body) -> tuple[object, ...]:
    if body.value is None:
        raise bad_request(
            "A `remixable` action needs `value`: true or false.",
            errors=[FieldError(field="value", message="required for remixable")],
            code=Code.VALUE_REQUIRED,
        )
    return (body.value,)


_ND = f"a NoDerivatives license ({' or '.join(ND_LICENSE_IDENTIFIERS)}), which forbids remixes"
_REMIXABLE = _flag(
    "remixable",
    f"({{v0}}::bool AND {is_nd_license('p.license_id')})",
    _refusal(
        (f"has {_ND}", f"have {_ND}"),
        "change their license first, or leave them out",
        "nd-license",
        Code.NO_DERIVATIVES_LICENSE,
    ),
    allowed=f"a.wrote_flag OR NOT {is_nd_license('p.license_id')}",
    refused="NoDerivatives",
)
REMIXABLE = BulkAction(
    name="remixable",
    verb="set the remix permission of",
    past="Changed remix permission of",
    undone="remix permission change",
    writes=("remixable",),
    owner=_REMIXABLE,
    moderator=_REMIXABLE,
    page=PageWords(
        doing="Changing remix permission of",
        did="Changed the remix permission of",
        done="changed",
        already="already so",
    ),
    values=_remixable_of,
)

# Every action, in the order the API documents them.
ACTIONS: tuple[BulkAction, ...] = (HIDE, UNHIDE, DELETE, RESTORE, LICENSE, TAGS, REMIXABLE)
_BY_NAME = {action.name: action for action in ACTIONS}
assert len(_BY_NAME) == len(ACTIONS), "two actions share a name"


def named(name: str) -> BulkAction:
    """The action a request or a `bulk_actions` row names."""
    return _BY_NAME[name]
