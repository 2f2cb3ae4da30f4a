"""Batch actions on a user's artworks (hide, unhide, delete, restore, license), all or nothing."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ..core.problems import FieldError, ProblemError, bad_request
from ..host.access import Principal
from ..host.eligibility import ensure_unique, ineligible, list_ids
from .batch_sql import (
    SQL_BATCH_DELETE_BY_MOD,
    SQL_BATCH_DELETE_BY_USER,
    SQL_BATCH_HIDE_BY_MOD,
    SQL_BATCH_HIDE_BY_USER,
    SQL_BATCH_LICENSE,
    SQL_BATCH_RESTORE_BY_MOD,
    SQL_BATCH_RESTORE_BY_USER,
    SQL_DELETED_BY_MODERATOR,
)
from .schemas import Action

_PAST = {"hide": "Hidden", "unhide": "Unhidden", "delete": "Deleted", "restore": "Restored"}
_ALREADY = {"hide": "already hidden", "unhide": "already visible", "restore": "not deleted"}
_SQL_BY_ACTION = {
    # action: (as the user, as a moderator)
    "hide": (SQL_BATCH_HIDE_BY_USER, SQL_BATCH_HIDE_BY_MOD),
    "unhide": (SQL_BATCH_HIDE_BY_USER, SQL_BATCH_HIDE_BY_MOD),
    "delete": (SQL_BATCH_DELETE_BY_USER, SQL_BATCH_DELETE_BY_MOD),
    "restore": (SQL_BATCH_RESTORE_BY_USER, SQL_BATCH_RESTORE_BY_MOD),
}


def _posts(n: int) -> str:
    # The host's wording: its page shows these messages as they are.
    return f"{n} post(s)"


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """`acted_on`: the posts the batch targeted, all of them eligible (what the host's page
    counts as affected); `changed`: those whose row actually changed."""

    acted_on: int
    changed: int
    message: str


async def _run_batch(
    pool: asyncpg.Pool,
    sql: str,
    principal: Principal,
    action: str,
    post_ids: list[int],
    *value: object,
) -> asyncpg.Record:
    actor = principal.caller.id if principal.as_moderator else None
    row: asyncpg.Record | None = await pool.fetchrow(
        sql, principal.target.id, post_ids, action, actor, *value
    )
    assert row is not None  # the statement always returns exactly one row
    return row


async def _restore_refused(pool: asyncpg.Pool, owner_id: int, missing: list[int]) -> Exception:
    # Only the owner's own posts: another user's post ids say nothing about themselves.
    by_moderator = list(await pool.fetchval(SQL_DELETED_BY_MODERATOR, missing, owner_id))
    if not by_moderator:
        return ineligible(missing, restorable=True)
    listed = list_ids(by_moderator)
    return bad_request(
        f"{'Post' if len(by_moderator) == 1 else 'Posts'} {listed} "
        f"{'was' if len(by_moderator) == 1 else 'were'} deleted by a moderator and can only be "
        "restored by a moderator; nothing was changed. Remove them and try again.",
        slug="ineligible-posts",
        errors=[FieldError(field="post_ids", message=f"deleted by a moderator: {listed}")],
        extra={"invalid_post_ids": missing},
    )


async def apply_action(
    pool: asyncpg.Pool, principal: Principal, action: Action, post_ids: list[int]
) -> BatchOutcome:
    """All-or-nothing, in one statement."""
    ensure_unique(post_ids)
    by_user, by_moderator = _SQL_BY_ACTION[action]
    sql = by_moderator if principal.as_moderator else by_user
    value = (action == "hide",) if action in ("hide", "unhide") else ()
    row = await _run_batch(pool, sql, principal, action, post_ids, *value)
    if row["missing"]:
        missing = list(row["missing"])
        if action == "restore" and not principal.as_moderator:
            raise await _restore_refused(pool, principal.target.id, missing)
        raise ineligible(missing, restorable=action == "restore")
    changed = len(row["changed"])
    message = f"{_PAST[action]} {_posts(len(post_ids))}"
    if changed < len(post_ids) and action in _ALREADY:
        message += f" ({len(post_ids) - changed} {_ALREADY[action]})"
    return BatchOutcome(len(post_ids), changed, message)


def _unknown_license(license_id: int | None) -> ProblemError:
    return bad_request(
        f"There is no license with id {license_id}; pick one of the site's licenses "
        "or send null to clear it.",
        slug="unknown-license",
        errors=[FieldError(field="license_id", message="unknown license")],
    )


async def set_license(
    pool: asyncpg.Pool, principal: Principal, post_ids: list[int], license_id: int | None
) -> BatchOutcome:
    """All-or-nothing, in one statement."""
    ensure_unique(post_ids)
    try:
        row = await _run_batch(pool, SQL_BATCH_LICENSE, principal, "license", post_ids, license_id)
    except asyncpg.ForeignKeyViolationError:
        # The license was deleted between the statement's check and its update.
        raise _unknown_license(license_id) from None
    if not row["precondition_ok"]:
        raise _unknown_license(license_id)
    if row["missing"]:
        raise ineligible(list(row["missing"]), restorable=False)
    # The host's page reads the new license back out of this sentence
    # (`/Changed license to (\S+)/`, only when it set one): keep its form exactly. Cleared, the
    # host's own words (its api/app/routers/pmd.py).
    if license_id is None:
        message = f"Removed license from {_posts(len(post_ids))}"
    else:
        message = f"Changed license to {row['license_identifier']} for {_posts(len(post_ids))}"
    return BatchOutcome(len(post_ids), len(row["changed"]), message)
