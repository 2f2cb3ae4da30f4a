"""Bulk actions on a user's artworks, all or nothing, by ids or on what a filter matches."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import msgspec

from ...core.codes import Code
from ...core.db import SET_CUSTOM_PLAN
from ...core.problems import FieldError, ProblemError, bad_request, validation_error
from ...host.access import Principal
from ...host.eligibility import ensure_unique, ineligible, posts_refused
from . import batch_sql as q
from .action_shape import BulkAction
from .actions import named
from .filters import FilterKeys, PostFilter, check_filter
from .pace import Budget, hold_budget
from .restore_rule import clashes_of, unless_raced
from .schemas import LeftOut, LeftReason

if TYPE_CHECKING:
    from ...core.db import Conn


@dataclass(frozen=True, slots=True)
class Matching:
    """Everything `where` matches, as the `expect_count` posts (`expect_digest` set) approved."""

    where: PostFilter
    expect_count: int
    expect_digest: str | None = None


Target = list[int] | Matching


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """`acted_on`: the eligible posts targeted; `left`: what a restore by filter left deleted."""

    acted_on: int
    changed: int
    message: str
    action_id: uuid.UUID | None = None
    left: tuple[LeftOut, ...] | None = None


async def target_of(
    pool: asyncpg.Pool,
    post_ids: list[int] | None,
    keys: FilterKeys | None,
    expect_count: int | None,
    expect_digest: str | None = None,
    click_id: uuid.UUID | None = None,
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
    if click_id is not None:
        # One request acts on every post a filter matches: it is never a batch of a click.
        raise validation_error(
            "`click_id` goes with `post_ids`: it names the click a batch of ids belongs to; "
            "an action by `filter` is one request already.",
            [FieldError(field="click_id", message="only with post_ids")],
        )
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
        code=Code.TOO_MANY_POSTS,
        details={"limit": most},
    )


def check_approval(
    count: int,
    digest: str,
    expect_count: int,
    expect_digest: str | None,
    count_changed: str,
    set_changed: str,
) -> None:
    """409 unless the posts matching now are the count (and set, when named) approved."""
    extra = {"count": count, "match_digest": digest}
    if count != expect_count:
        raise ProblemError(
            409, "count-changed", "Conflict", count_changed, extra=extra, code=Code.COUNT_CHANGED
        )
    if expect_digest is not None and digest != expect_digest:
        raise ProblemError(
            409, "set-changed", "Conflict", set_changed, extra=extra, code=Code.SET_CHANGED
        )


_REUPLOADED_MEANWHILE = (
    "An artwork of these posts was uploaded again while they were being restored; nothing "
    "was changed. Reload the list: it shows which posts can no longer be restored."
)


async def _run(
    pool: asyncpg.Pool,
    principal: Principal,
    action: BulkAction,
    target: Target,
    max_posts: int,
    budget: Budget,
    click: uuid.UUID | None,
    *values: object,
) -> asyncpg.Record:
    actor = principal.caller.id if principal.as_moderator else None
    owner = principal.target.id
    named: dict[str, object] = {"owner": owner, "action": action.name, "actor": actor}
    named |= q.action_values(values)
    by_filter = isinstance(target, Matching)
    sql = q.statement(action, moderator=principal.as_moderator, by_filter=by_filter)
    if isinstance(target, Matching):
        if target.expect_count > max_posts:
            raise _too_many(target.expect_count, max_posts)
        named |= {
            "expect_count": target.expect_count,
            "most": max_posts,
            "keys": msgspec.json.encode(target.where.keys).decode(),
            "expect_digest": target.expect_digest,
            **target.where.named(),
        }
    else:
        ensure_unique(target)
        named |= {"post_ids": target, "click": click}

    async def attempt(conn: Conn) -> asyncpg.Record:
        room = await hold_budget(conn, budget, owner, actor)
        if by_filter:
            await conn.execute(SET_CUSTOM_PLAN)  # core/db.py says why
        row = await conn.fetchrow(*sql.bind(named | {"room": room.left}))
        assert row is not None  # the statement always returns exactly one row
        if row["ready"] and not row["within_budget"]:
            raise await room.refusal(row["would"])
        await room.spend(row["changed"])
        return row

    row = await unless_raced(pool, attempt, _REUPLOADED_MEANWHILE)
    # A refusal answers before a count that changed, unless the statement skips the refused.
    if (
        isinstance(target, Matching)
        and row["precondition_ok"]
        and (not row["refused"] or _skips_refused(action, principal, target))
    ):
        count = row["matched"]
        if count > max_posts:
            raise _too_many(count, max_posts)
        check_approval(
            count,
            row["match_digest"],
            target.expect_count,
            target.expect_digest,
            f"The filter now matches {count} posts, not the {target.expect_count} approved: "
            "posts were added, changed or removed meanwhile. Nothing was changed; check the list "
            f"and confirm the action on {count} posts.",
            f"The filter still matches {count} posts, but not the ones approved: some left the "
            "filter and others came in meanwhile. Nothing was changed; check the list and confirm "
            "the action again.",
        )
    return row


def _skips_refused(action: BulkAction, principal: Principal, target: Target) -> bool:
    """Whether the batch leaves refused posts and changes the rest (a restore by filter)."""
    by_filter = isinstance(target, Matching)
    return action.caller(principal.as_moderator).part(by_filter).skip_refused


# Why a restore by filter left a post, as its answer's message says it (one post, several).
_LEFT_WHY: dict[LeftReason, tuple[str, str]] = {
    "deleted-by-moderator": (
        "was deleted by a moderator (only a moderator may restore it)",
        "were deleted by a moderator (only a moderator may restore them)",
    ),
    "artwork-reuploaded": (
        "is the same artwork as a live post",
        "are the same artwork as live posts",
    ),
    "same-artwork": (
        "is the same artwork as another deleted post of the filter: restore one of them by "
        "selecting it",
        "are the same artwork as other deleted posts of the filter: restore one of each by "
        "selecting it",
    ),
}


def _left_out(row: asyncpg.Record) -> tuple[LeftOut, ...]:
    """The posts a restore by filter left deleted, by reason (a moderator's delete first)."""
    by_moderator = set(row["by_moderator"])
    reasons: dict[LeftReason, list[int]] = {}
    if by_moderator:
        reasons["deleted-by-moderator"] = sorted(by_moderator)
    for clash in clashes_of(row["clashes"]):
        if clash.post_id in by_moderator:
            continue
        live = clash.held_by is None or clash.held_by.live
        why: LeftReason = "artwork-reuploaded" if live else "same-artwork"
        reasons.setdefault(why, []).append(clash.post_id)
    return tuple(LeftOut(why, len(ids), ids) for why, ids in reasons.items())


async def _refuse_restore(pool: asyncpg.Pool, owner_id: int, missing: list[int]) -> None:
    """400 naming the posts of `missing` a moderator deleted, if any."""
    # Only the owner's own posts: another user's post ids say nothing about themselves.
    by_moderator = list(await pool.fetchval(q.SQL_DELETED_BY_MODERATOR, missing, owner_id))
    if by_moderator:
        raise posts_refused(
            by_moderator,
            f"{'was' if len(by_moderator) == 1 else 'were'} deleted by a moderator and can only "
            "be restored by a moderator",
            "Remove them and try again.",
            "deleted by a moderator",
            code=Code.POSTS_DELETED_BY_MODERATOR,
            extra={"invalid_post_ids": missing},
        )


async def apply_action(
    pool: asyncpg.Pool,
    principal: Principal,
    action: str,
    target: Target,
    *values: object,
    budget: Budget,
    max_posts: int = 10_000,
    click: uuid.UUID | None = None,
) -> BatchOutcome:
    """All or nothing, in one statement, within `budget`; `values`: unless the action fixes them;
    `click`: the click a batch by ids belongs to, whose entry in the history it answers."""
    record = named(action)
    values = record.fixed or values
    try:
        row = await _run(pool, principal, record, target, max_posts, budget, click, *values)
    except asyncpg.ForeignKeyViolationError:
        # The value's row (a license) was deleted between the statement's check and its update.
        if record.unmet is None:
            raise
        raise record.unmet(values) from None
    if not row["precondition_ok"]:
        assert record.unmet is not None  # only an action with a precondition fails it
        raise record.unmet(values)
    if row["missing"]:
        missing = list(row["missing"])
        if record.restores and not principal.as_moderator:
            await _refuse_restore(pool, principal.target.id, missing)
        raise ineligible(missing, restorable=record.restores)
    left: tuple[LeftOut, ...] | None = None
    if _skips_refused(record, principal, target):
        left = _left_out(row)
    elif row["refused"]:
        refusal = record.caller(principal.as_moderator).refusal
        assert refusal is not None  # only an action with a refusal refuses posts
        raise refusal(list(row["refused"]), row)
    left_count = sum(group.count for group in left or ())
    acted_on = (len(target) if isinstance(target, list) else int(row["matched"])) - left_count
    changed = row["changed"]
    # The host's wording: its page shows these messages as they are.
    message = f"{record.said(row, values)} {acted_on} post(s)"
    if changed < acted_on and record.already is not None:
        message += f" ({acted_on - changed} {record.already})"
    if left:
        parts = [f"{g.count} {_LEFT_WHY[g.reason][g.count != 1]}" for g in left]
        message += f"; {left_count} left deleted: {'; '.join(parts)}"
    return BatchOutcome(acted_on, changed, message, row["action_id"], left)
