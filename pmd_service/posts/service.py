"""Listing a user's artworks and changing them in batches: SQL beside the code that runs it.

Playlists (`kind = 'playlist'`) are deliberately left out of PMD everywhere here: managing
playlists in bulk is a deferred feature, so they are neither listed, counted nor actionable.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import msgspec

from ..auth import Principal
from ..errors import FieldError, ProblemError, bad_request, validation_error
from .schemas import MAX_BATCH, Action, License, LicenseList, PostFile, PostItem, PostPage

if TYPE_CHECKING:
    from ..db import Conn


_ITEM_COLUMNS = """
    p.id, p.public_sqid, p.title, p.description, p.created_at, p.width, p.height,
    p.frame_count, p.art_url, p.hidden_by_user, p.hidden_by_mod, p.view_count,
    p.deleted_by_user_date, l.identifier AS license_identifier,
    coalesce(f.files, '[]') AS files,
    (SELECT count(*) FROM reactions r WHERE r.post_id = p.id) AS reaction_count,
    (SELECT count(*) FROM comments c WHERE c.post_id = p.id
        AND NOT c.hidden_by_mod AND NOT c.deleted_by_owner AND NOT c.deleted_by_mod) AS comment_count
"""
_ITEM_JOINS = """
    LEFT JOIN licenses l ON l.id = p.license_id
    -- json text, not jsonb: cheaper to build, and decoded straight into PostFile structs
    -- (a generic JSON decode plus msgspec.convert took half the Python time of a page).
    LEFT JOIN LATERAL (
        SELECT json_agg(json_build_object(
                   'format', pf.format, 'file_bytes', pf.file_bytes, 'is_native', pf.is_native)
               ORDER BY pf.is_native DESC, pf.format)::text AS files
        FROM post_files pf WHERE pf.post_id = p.id
    ) f ON true
"""
_LIVE = "p.owner_id = $1 AND p.kind = 'artwork' AND NOT p.deleted_by_user"
_DELETED = (
    "p.owner_id = $1 AND p.kind = 'artwork' AND p.deleted_by_user"
    " AND p.deleted_by_user_date > now() - interval '7 days'"
)
# The total is an uncorrelated scalar subquery: evaluated once, same round trip as the page.
_TOTAL_LIVE = f"(SELECT count(*) FROM posts p WHERE {_LIVE}) AS total_count"
_TOTAL_DELETED = f"(SELECT count(*) FROM posts p WHERE {_DELETED}) AS total_count"

# Keyset pagination on (created_at, id): ids break timestamp ties, so nothing is skipped.
SQL_LIST_FIRST = f"""
SELECT {_ITEM_COLUMNS}, {_TOTAL_LIVE}
FROM posts p {_ITEM_JOINS}
WHERE {_LIVE}
ORDER BY p.created_at DESC, p.id DESC
LIMIT $2
"""
SQL_LIST_AFTER = f"""
SELECT {_ITEM_COLUMNS}, {_TOTAL_LIVE}
FROM posts p {_ITEM_JOINS}
WHERE {_LIVE} AND (p.created_at, p.id) < ($3, $4)
ORDER BY p.created_at DESC, p.id DESC
LIMIT $2
"""
SQL_LIST_DELETED_FIRST = f"""
SELECT {_ITEM_COLUMNS}, {_TOTAL_DELETED}
FROM posts p {_ITEM_JOINS}
WHERE {_DELETED}
ORDER BY p.deleted_by_user_date DESC, p.id DESC
LIMIT $2
"""
SQL_LIST_DELETED_AFTER = f"""
SELECT {_ITEM_COLUMNS}, {_TOTAL_DELETED}
FROM posts p {_ITEM_JOINS}
WHERE {_DELETED} AND (p.deleted_by_user_date, p.id) < ($3, $4)
ORDER BY p.deleted_by_user_date DESC, p.id DESC
LIMIT $2
"""
SQL_COUNT_LIVE = f"SELECT count(*) FROM posts p WHERE {_LIVE}"
SQL_COUNT_DELETED = f"SELECT count(*) FROM posts p WHERE {_DELETED}"

# Eligibility with row locks, for callers that act on the posts later in their own transaction
# (BDR requests). Ordered by id so overlapping batches lock in the same order (no deadlock).
SQL_LOCK_LIVE = """
SELECT id FROM posts
WHERE id = ANY($2::int[]) AND owner_id = $1 AND kind = 'artwork' AND NOT deleted_by_user
ORDER BY id FOR UPDATE
"""
SQL_LOCK_RESTORABLE = """
SELECT id FROM posts
WHERE id = ANY($2::int[]) AND owner_id = $1 AND kind = 'artwork' AND deleted_by_user
  AND deleted_by_user_date > now() - interval '7 days'
ORDER BY id FOR UPDATE
"""

# One statement per batch: lock the eligible rows (in id order, so overlapping batches never
# deadlock), name every requested id that is not eligible, and only when there is none change
# the rows, write the moderator's audit row and NOTIFY pmd_posts_changed. A single statement
# is atomic, so all-or-nothing needs no explicit transaction, and a batch costs one round trip
# (BEGIN, lock, update, audit, notify, COMMIT as separate statements measured ~30% slower).
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
    -- `updated_at` is the host's "last changed" column (its ORM bumps it on every change).
    UPDATE posts p SET {assign}, updated_at = now()
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
_ELIGIBLE_RESTORABLE = "deleted_by_user AND deleted_by_user_date > now() - interval '7 days'"
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
SQL_BATCH_RESTORE_BY_USER = _batch(
    eligible=f"{_ELIGIBLE_RESTORABLE} AND {_NOT_BY_MODERATOR}", assign=_RESTORE
)
SQL_BATCH_RESTORE_BY_MOD = _batch(
    eligible=_ELIGIBLE_RESTORABLE, assign=_RESTORE, moderation=_UNMARK_MODERATOR_DELETE
)
# An unknown license refuses the batch too (`precondition_ok` false); the row carries the
# license's identifier for the message the host's page parses.
SQL_BATCH_LICENSE = _batch(
    eligible=_ELIGIBLE_LIVE,
    precondition="($5::int IS NULL OR EXISTS (SELECT 1 FROM licenses WHERE id = $5::int))",
    assign="license_id = $5::int",
    differs="p.license_id IS DISTINCT FROM $5::int",
    columns=", (SELECT identifier FROM licenses WHERE id = $5::int) AS license_identifier",
)
SQL_DELETED_BY_MODERATOR = """
SELECT coalesce(array_agg(post_id ORDER BY post_id), '{}') FROM moderator_deletions
WHERE post_id = ANY($1::int[]) AND owner_id = $2
"""


# --- listing -------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR_RE = re.compile(r"(?P<kind>[dl]):(?P<micros>-?[0-9]{1,18}):(?P<post_id>[0-9]{1,10})")
_MAX_CURSOR = 100


@dataclass(frozen=True)
class Cursor:
    deleted: bool
    at: datetime
    post_id: int

    def encode(self) -> str:
        raw = f"{'d' if self.deleted else 'l'}:{_micros(self.at)}:{self.post_id}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, deleted: bool) -> Cursor:
        """The cursor behind `token`; 400 for anything `encode` could not have produced."""
        problem = bad_request(
            "`cursor` is not one this API returned; pass `next_cursor` from the previous "
            "page unchanged, or omit it for the first page.",
            slug="invalid-cursor",
            errors=[FieldError(field="cursor", message="invalid cursor")],
        )
        if len(token) > _MAX_CURSOR:
            raise problem
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise problem from None
        # Strict ASCII grammar: int() alone would also take "1_0", " 7" or non-Latin digits.
        match = _CURSOR_RE.fullmatch(raw)
        if match is None or (match["kind"] == "d") != deleted:
            raise problem
        post_id = int(match["post_id"])
        try:
            at = _EPOCH + timedelta(microseconds=int(match["micros"]))
        except OverflowError:
            raise problem from None
        if not 0 < post_id < 2**31:
            raise problem
        return cls(deleted, at, post_id)


def _micros(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_FILES = msgspec.json.Decoder(list[PostFile])


def _item(row: asyncpg.Record) -> PostItem:
    return PostItem(
        id=row["id"],
        public_sqid=row["public_sqid"],
        title=row["title"],
        description=row["description"],
        created_at=row["created_at"],
        width=row["width"],
        height=row["height"],
        frame_count=row["frame_count"],
        files=_FILES.decode(row["files"]),
        art_url=row["art_url"],
        hidden_by_user=row["hidden_by_user"],
        hidden_by_mod=row["hidden_by_mod"],
        reaction_count=row["reaction_count"],
        comment_count=row["comment_count"],
        view_count=row["view_count"],
        license_identifier=row["license_identifier"],
        deleted_by_user_date=row["deleted_by_user_date"],
    )


async def list_posts(
    pool: asyncpg.Pool, owner_id: int, limit: int, cursor: str | None, deleted: bool
) -> PostPage:
    after = Cursor.decode(cursor, deleted) if cursor else None
    first_sql, after_sql = (
        (SQL_LIST_DELETED_FIRST, SQL_LIST_DELETED_AFTER)
        if deleted
        else (SQL_LIST_FIRST, SQL_LIST_AFTER)
    )
    # One row more than asked tells whether another page exists, so the last page carries no
    # cursor and a client never spends a request on an empty page.
    if after is None:
        rows = await pool.fetch(first_sql, owner_id, limit + 1)
    else:
        rows = await pool.fetch(after_sql, owner_id, limit + 1, after.at, after.post_id)
    if rows:
        total = rows[0]["total_count"]
    else:  # an empty page (no posts, or a cursor past the end) still reports the total
        total = await pool.fetchval(SQL_COUNT_DELETED if deleted else SQL_COUNT_LIVE, owner_id)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [_item(r) for r in rows]
    next_cursor = None
    if more:
        last = rows[-1]
        key = last["deleted_by_user_date"] if deleted else last["created_at"]
        next_cursor = Cursor(deleted, key, last["id"]).encode()
    return PostPage(items=items, next_cursor=next_cursor, total_count=total)


SQL_LICENSES = "SELECT id, identifier, title FROM licenses ORDER BY identifier, id"


async def list_licenses(pool: asyncpg.Pool) -> LicenseList:
    rows = await pool.fetch(SQL_LICENSES)
    return LicenseList([License(r["id"], r["identifier"], r["title"]) for r in rows])


# --- batch actions -------------------------------------------------------------------------


def ensure_unique(post_ids: list[int]) -> None:
    dupes = sorted(i for i, n in Counter(post_ids).items() if n > 1)
    if dupes:
        listed = _list_ids(dupes)
        raise validation_error(
            f"`post_ids` must be 1 to {MAX_BATCH} distinct ids; repeated: {listed}. "
            "Send each id once.",
            [FieldError(field="post_ids", message=f"repeated ids: {listed}")],
        )


def _list_ids(ids: list[int], shown: int = 20) -> str:
    listed = ", ".join(map(str, ids[:shown]))
    return f"{listed} and {len(ids) - shown} more" if len(ids) > shown else listed


def _ineligible(missing: list[int], restorable: bool) -> Exception:
    one = len(missing) == 1
    if restorable:
        why = (
            "is not a deleted artwork of this user that can still be restored"
            if one
            else "are not deleted artworks of this user that can still be restored"
        ) + " (deleted posts can be restored for 7 days)"
    else:
        why = (
            "is not one of this user's artworks, or is deleted"
            if one
            else "are not this user's artworks, or are deleted"
        )
    listed = _list_ids(missing)
    return bad_request(
        f"{'Post' if one else 'Posts'} {listed} {why}; nothing was changed. "
        f"Remove {'it' if one else 'them'} and try again.",
        slug="ineligible-posts",
        errors=[FieldError(field="post_ids", message=f"ineligible: {listed}")],
        extra={"invalid_post_ids": missing},
    )


async def lock_eligible(
    conn: Conn, owner_id: int, post_ids: list[int], restorable: bool = False
) -> None:
    """Lock the posts or raise 400 naming every id that is not the owner's eligible artwork."""
    sql = SQL_LOCK_RESTORABLE if restorable else SQL_LOCK_LIVE
    found = {r["id"] for r in await conn.fetch(sql, owner_id, post_ids)}
    missing = sorted(set(post_ids) - found)
    if missing:
        raise _ineligible(missing, restorable)


_PAST = {"hide": "Hidden", "unhide": "Unhidden", "delete": "Deleted", "restore": "Restored"}
_ALREADY = {"hide": "already hidden", "unhide": "already visible"}
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
        return _ineligible(missing, restorable=True)
    listed = _list_ids(by_moderator)
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
        raise _ineligible(missing, restorable=action == "restore")
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
        raise _ineligible(list(row["missing"]), restorable=False)
    # The host's page reads the new license back out of this sentence
    # (`/Changed license to (\S+)/`): keep its form exactly, "None" for no license.
    identifier = row["license_identifier"] if license_id is not None else None
    message = f"Changed license to {identifier} for {_posts(len(post_ids))}"
    return BatchOutcome(len(post_ids), len(row["changed"]), message)
