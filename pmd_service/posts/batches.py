"""Bulk actions on a user's artworks (hide, unhide, delete, restore, license, tags, remix
permission), all or nothing, on a list of ids or on everything a filter matches."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import msgspec

from ..core.db import fetch_planned
from ..core.problems import FieldError, ProblemError, bad_request, conflict, validation_error
from ..host.access import Principal
from ..host.eligibility import ensure_unique, ineligible, list_ids
from . import batch_sql as q
from .filters import FilterKeys, PostFilter, check_filter
from .host_rules import (
    MAX_MOD_TAGS_PER_POST,
    MAX_TAG_LENGTH,
    MAX_TAGS_PER_POST,
    ND_LICENSE_IDENTIFIERS,
    normalize_hashtags,
)
from .restore_rule import HASH_INDEX, artwork_held

_PAST = {
    "hide": "Hidden", "unhide": "Unhidden", "delete": "Deleted", "restore": "Restored",
    "tags": "Retagged", "remixable": "Changed remix permission of",
}  # fmt: skip
_ALREADY = {"hide": "already hidden", "unhide": "already visible", "restore": "not deleted"}
# action: ((as the user, as a moderator) by ids, (as the user, as a moderator) by filter)
_SQL: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "hide": (
        (q.SQL_BATCH_HIDE_BY_USER, q.SQL_BATCH_HIDE_BY_MOD),
        (q.SQL_FILTER_HIDE_BY_USER, q.SQL_FILTER_HIDE_BY_MOD),
    ),
    "delete": (
        (q.SQL_BATCH_DELETE_BY_USER, q.SQL_BATCH_DELETE_BY_MOD),
        (q.SQL_FILTER_DELETE_BY_USER, q.SQL_FILTER_DELETE_BY_MOD),
    ),
    "restore": (
        (q.SQL_BATCH_RESTORE_BY_USER, q.SQL_BATCH_RESTORE_BY_MOD),
        (q.SQL_FILTER_RESTORE_BY_USER, q.SQL_FILTER_RESTORE_BY_MOD),
    ),
    "license": ((q.SQL_BATCH_LICENSE,) * 2, (q.SQL_FILTER_LICENSE,) * 2),
    "tags": (
        (q.SQL_BATCH_TAGS, q.SQL_BATCH_MOD_TAGS),
        (q.SQL_FILTER_TAGS, q.SQL_FILTER_MOD_TAGS),
    ),
    "remixable": ((q.SQL_BATCH_REMIXABLE,) * 2, (q.SQL_FILTER_REMIXABLE,) * 2),
}
_SQL["unhide"] = _SQL["hide"]


def _posts(n: int) -> str:
    # The host's wording: its page shows these messages as they are.
    return f"{n} post(s)"


@dataclass(frozen=True, slots=True)
class Matching:
    """Everything `where` matches, as `expect_count` posts the person approved (and, with
    `expect_digest`, as the very set the listing's `match_digest` named)."""

    where: PostFilter
    expect_count: int
    expect_digest: str | None = None


Target = list[int] | Matching


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """`acted_on`: the posts the batch targeted, all of them eligible (what the host's page
    counts as affected); `changed`: those whose row actually changed; `action_id`: the undo
    history's row (None when nothing changed)."""

    acted_on: int
    changed: int
    message: str
    action_id: uuid.UUID | None = None


async def target_of(
    pool: asyncpg.Pool,
    post_ids: list[int] | None,
    keys: FilterKeys | None,
    expect_count: int | None,
    expect_digest: str | None = None,
) -> Target:
    """The posts a request names: a list of ids, or a filter with the count approved."""
    # Shapes of the body, so 422 as msgspec's own checks are.
    if (post_ids is None) == (keys is None):
        raise validation_error(
            "Name the posts with `post_ids` (1 to 128 ids) or with `filter` and "
            "`expect_count`, not both and not neither.",
            [FieldError(field="post_ids", message="post_ids or filter, one of them")],
        )
    if post_ids is not None:
        if expect_count is not None or expect_digest is not None:
            field = "expect_count" if expect_count is not None else "expect_digest"
            raise validation_error(
                f"`{field}` goes with `filter`; with `post_ids` the ids name the posts.",
                [FieldError(field=field, message="only with filter")],
            )
        return post_ids
    assert keys is not None
    if expect_count is None:
        raise validation_error(
            "An action by `filter` needs `expect_count`: the number of matching posts the "
            "person approved (the listing's `total_count` for the same filter).",
            [FieldError(field="expect_count", message="required with filter")],
        )
    return Matching(await check_filter(pool, keys, "filter."), expect_count, expect_digest)


def _too_many(count: int, most: int) -> ProblemError:
    return bad_request(
        f"The filter matches {count} posts; one action changes at most {most}. Narrow the "
        "filter (a tag, a license, a date range) and act on each part.",
        slug="too-many-posts",
        errors=[FieldError(field="filter", message=f"matches {count}, at most {most}")],
        extra={"count": count},
    )


def _count_changed(count: int, expected: int, digest: str) -> ProblemError:
    return ProblemError(
        409,
        "count-changed",
        "Conflict",
        f"The filter now matches {count} posts, not the {expected} approved: posts were "
        "added, changed or removed meanwhile. Nothing was changed; check the list and confirm "
        f"the action on {count} posts.",
        extra={"count": count, "match_digest": digest},
    )


def _set_changed(count: int, digest: str) -> ProblemError:
    return ProblemError(
        409,
        "set-changed",
        "Conflict",
        f"The filter still matches {count} posts, but not the ones approved: some left the "
        "filter and others came in meanwhile. Nothing was changed; check the list and confirm "
        "the action again.",
        extra={"count": count, "match_digest": digest},
    )


def _reuploaded_meanwhile() -> ProblemError:
    return conflict(
        "An artwork of these posts was uploaded again while they were being restored; nothing "
        "was changed. Reload the list: it shows which posts can no longer be restored.",
        slug="artwork-reuploaded",
    )


# A restore that raced an upload runs again, and then sees the upload and names it.
_RESTORE_TRIES = 3


async def _run(
    pool: asyncpg.Pool,
    principal: Principal,
    action: str,
    target: Target,
    max_posts: int,
    *values: object,
) -> asyncpg.Record:
    by_ids, by_filter = _SQL[action]
    actor = principal.caller.id if principal.as_moderator else None
    owner = principal.target.id
    if isinstance(target, Matching):
        if target.expect_count > max_posts:
            raise _too_many(target.expect_count, max_posts)
        sql = by_filter[principal.as_moderator]
        keys = msgspec.json.encode(target.where.keys).decode()
        args = (owner, target.expect_count, action, actor, max_posts, keys,
                target.expect_digest, *target.where.params(), *values)  # fmt: skip
    else:
        ensure_unique(target)
        sql = by_ids[principal.as_moderator]
        args = (owner, target, action, actor, *values)
    row: asyncpg.Record | None = None
    for _ in range(_RESTORE_TRIES):
        try:
            if isinstance(target, Matching):
                rows = await fetch_planned(pool, sql, *args)
                row = rows[0] if rows else None
            else:
                row = await pool.fetchrow(sql, *args)
            break
        except asyncpg.UniqueViolationError as exc:
            # An upload of the same artwork committed after this statement's snapshot: the
            # statement failed whole; run again, it then sees the upload and refuses by name.
            if exc.constraint_name != HASH_INDEX:
                raise
    else:
        raise _reuploaded_meanwhile()
    assert row is not None  # the statement always returns exactly one row
    if isinstance(target, Matching) and row["precondition_ok"] and not row["refused"]:
        if row["matched"] > max_posts:
            raise _too_many(row["matched"], max_posts)
        if row["matched"] != target.expect_count:
            raise _count_changed(row["matched"], target.expect_count, row["match_digest"])
        if target.expect_digest is not None and row["match_digest"] != target.expect_digest:
            raise _set_changed(row["matched"], row["match_digest"])
    return row


def _acted_on(target: Target, row: asyncpg.Record) -> int:
    return len(target) if isinstance(target, list) else int(row["matched"])


def _refused(action: str, ids: list[int], moderator: bool) -> ProblemError:
    one = len(ids) == 1
    listed = list_ids(ids)
    reason = "tag-cap"
    if action == "remixable":
        why = (
            f"{'has' if one else 'have'} a NoDerivatives license "
            f"({' or '.join(ND_LICENSE_IDENTIFIERS)}), which forbids remixes"
        )
        fix = "change their license first, or leave them out"
        reason = "nd-license"
    elif moderator:
        why = f"would carry more than {MAX_MOD_TAGS_PER_POST} moderator tags"
        fix = "remove some of their moderator tags first, or leave them out"
    else:
        why = f"would carry more than {MAX_TAGS_PER_POST} tags of the artist's own"
        fix = "remove some of their tags first, or leave them out"
    return bad_request(
        f"{'Post' if one else 'Posts'} {listed} {why}; nothing was changed. To go on, {fix}.",
        slug="ineligible-posts",
        errors=[FieldError(field="post_ids", message=f"refused: {listed}")],
        extra={"invalid_post_ids": ids, "reason": reason},
    )


async def _restore_refused(
    pool: asyncpg.Pool, owner_id: int, missing: list[int], *, by_filter: bool = False
) -> ProblemError | None:
    """400 naming the posts of `missing` a moderator deleted (None: none of them)."""
    # Only the owner's own posts: another user's post ids say nothing about themselves.
    by_moderator = list(await pool.fetchval(q.SQL_DELETED_BY_MODERATOR, missing, owner_id))
    if not by_moderator:
        return None
    listed = list_ids(by_moderator)
    # A filter's set cannot leave them out: the listing marks them, the others go by ids.
    fix = "Select the others and restore those." if by_filter else "Remove them and try again."
    return bad_request(
        f"{'Post' if len(by_moderator) == 1 else 'Posts'} {listed} "
        f"{'was' if len(by_moderator) == 1 else 'were'} deleted by a moderator and can only be "
        f"restored by a moderator; nothing was changed. {fix}",
        slug="ineligible-posts",
        errors=[
            FieldError(
                field="filter" if by_filter else "post_ids",
                message=f"deleted by a moderator: {listed}",
            )
        ],
        extra={"invalid_post_ids": by_moderator if by_filter else missing},
    )


def _tag_list(field: str, tags: list[str]) -> list[str]:
    long = [t for t in tags if len(t) > MAX_TAG_LENGTH]
    if long:
        raise bad_request(
            f"`{field}` takes tags of at most {MAX_TAG_LENGTH} characters; "
            f"{long[0][:40]!r} is longer.",
            slug="invalid-tags",
            errors=[FieldError(field=field, message="tag too long")],
        )
    return tags


def tag_change(add: list[str], remove: list[str]) -> tuple[list[str], list[str]]:
    """The normalised tags to add and remove, or a 400 naming what is wrong."""
    added = _tag_list("add", normalize_hashtags(add))
    removed = _tag_list("remove", normalize_hashtags(remove))
    if not added and not removed:
        raise bad_request(
            "A `tags` action needs tags in `add`, `remove` or both.",
            slug="invalid-tags",
            errors=[FieldError(field="add", message="no tags to add or remove")],
        )
    both = [t for t in added if t in removed]
    if both:
        raise bad_request(
            f"`add` and `remove` both name {both[0]!r}; name each tag in one of them.",
            slug="invalid-tags",
            errors=[FieldError(field="remove", message=f"also in add: {both[0]}")],
        )
    return added, removed


async def apply_action(
    pool: asyncpg.Pool,
    principal: Principal,
    action: str,
    target: Target,
    *values: object,
    max_posts: int = 10_000,
) -> BatchOutcome:
    """All-or-nothing, in one statement. `values`: hide/unhide none (the action says), tags
    (add, remove) normalised, remixable (value,)."""
    if action in ("hide", "unhide"):
        values = (action == "hide",)
    row = await _run(pool, principal, action, target, max_posts, *values)
    if row["missing"]:
        missing = list(row["missing"])
        if action == "restore" and not principal.as_moderator:
            by_moderator = await _restore_refused(pool, principal.target.id, missing)
            if by_moderator is not None:
                raise by_moderator
        raise ineligible(missing, restorable=action == "restore")
    if row["refused"]:
        refused = list(row["refused"])
        if action == "restore":
            if not principal.as_moderator:
                by_moderator = await _restore_refused(
                    pool, principal.target.id, refused, by_filter=isinstance(target, Matching)
                )
                if by_moderator is not None:
                    raise by_moderator
            raise artwork_held(row["clashes"])
        raise _refused(action, refused, principal.as_moderator)
    acted_on = _acted_on(target, row)
    changed = row["changed"]
    message = f"{_PAST[action]} {_posts(acted_on)}"
    if changed < acted_on and action in _ALREADY:
        message += f" ({acted_on - changed} {_ALREADY[action]})"
    return BatchOutcome(acted_on, changed, message, row["action_id"])


def _unknown_license(license_id: int | None) -> ProblemError:
    return bad_request(
        f"There is no license with id {license_id}; pick one of the site's licenses "
        "or send null to clear it.",
        slug="unknown-license",
        errors=[FieldError(field="license_id", message="unknown license")],
    )


async def set_license(
    pool: asyncpg.Pool,
    principal: Principal,
    target: Target,
    license_id: int | None,
    *,
    max_posts: int = 10_000,
) -> BatchOutcome:
    """All-or-nothing, in one statement."""
    try:
        row = await _run(pool, principal, "license", target, max_posts, license_id)
    except asyncpg.ForeignKeyViolationError:
        # The license was deleted between the statement's check and its update.
        raise _unknown_license(license_id) from None
    if not row["precondition_ok"]:
        raise _unknown_license(license_id)
    if row["missing"]:
        raise ineligible(list(row["missing"]), restorable=False)
    acted_on = _acted_on(target, row)
    # The host's page reads the new license back out of this sentence
    # (`/Changed license to (\S+)/`, only when it set one): keep its form exactly. Cleared, the
    # host's own words (its api/app/routers/pmd.py).
    if license_id is None:
        message = f"Removed license from {_posts(acted_on)}"
    else:
        message = f"Changed license to {row['license_identifier']} for {_posts(acted_on)}"
    return BatchOutcome(acted_on, row["changed"], message, row["action_id"])
