"""Listing a user's artworks and changing them in batches: SQL beside the code that runs it.

Playlists (`kind = 'playlist'`) are deliberately left out of PMD everywhere here: managing
playlists in bulk is a deferred feature, so they are neither listed, counted nor actionable.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import msgspec

from ..auth import Principal
from ..errors import FieldError, bad_request, validation_error
from .schemas import MAX_BATCH, Action, PostFile, PostItem, PostPage

if TYPE_CHECKING:
    from ..db import Conn


RESTORE_WINDOW = timedelta(days=7)

_ITEM_COLUMNS = """
    p.id, p.public_sqid, p.title, p.description, p.created_at, p.width, p.height,
    p.frame_count, p.art_url, p.hidden_by_user, p.hidden_by_mod, p.view_count,
    p.deleted_by_user_date, l.identifier AS license_identifier,
    coalesce(f.files, '[]'::jsonb) AS files,
    (SELECT count(*) FROM reactions r WHERE r.post_id = p.id) AS reaction_count,
    (SELECT count(*) FROM comments c WHERE c.post_id = p.id
        AND NOT c.hidden_by_mod AND NOT c.deleted_by_owner AND NOT c.deleted_by_mod) AS comment_count
"""
_ITEM_JOINS = """
    LEFT JOIN licenses l ON l.id = p.license_id
    LEFT JOIN LATERAL (
        SELECT jsonb_agg(jsonb_build_object(
                   'format', pf.format, 'file_bytes', pf.file_bytes, 'is_native', pf.is_native)
               ORDER BY pf.is_native DESC, pf.format) AS files
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

# Eligibility, with row locks so a concurrent batch cannot change the rows between the check
# and the update. Ordered by id so overlapping batches lock in the same order (no deadlock).
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
SQL_HIDE_BY_USER = """
UPDATE posts SET hidden_by_user = $2
WHERE id = ANY($1::int[]) AND hidden_by_user <> $2
RETURNING id
"""
SQL_HIDE_BY_MOD = """
UPDATE posts SET hidden_by_mod = $2
WHERE id = ANY($1::int[]) AND hidden_by_mod <> $2
RETURNING id
"""
SQL_DELETE = """
UPDATE posts SET deleted_by_user = true, deleted_by_user_date = now() WHERE id = ANY($1::int[])
RETURNING id
"""
SQL_RESTORE = """
UPDATE posts SET deleted_by_user = false, deleted_by_user_date = NULL WHERE id = ANY($1::int[])
RETURNING id
"""
SQL_SET_LICENSE = """
UPDATE posts SET license_id = $2
WHERE id = ANY($1::int[]) AND license_id IS DISTINCT FROM $2
RETURNING id
"""
SQL_LICENSE_EXISTS = "SELECT EXISTS (SELECT 1 FROM licenses WHERE id = $1)"
SQL_AUDIT = """
INSERT INTO audit_logs (actor_id, action, target_type, target_id, note)
VALUES ($1, $2, 'user', $3, $4)
"""
# Delivered at commit, so the host site drops feed caches only for changes that happened.
SQL_NOTIFY_POSTS = "SELECT pg_notify('pmd_posts_changed', $1)"


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
        files=msgspec.convert(row["files"], list[PostFile]),
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
    else:  # an empty page (only reachable with a stale cursor) still reports the total
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


def _posts(n: int) -> str:
    return f"{n} post" if n == 1 else f"{n} posts"


async def _after_change(
    conn: Conn, principal: Principal, action: str, post_ids: list[int], changed: list[int]
) -> None:
    if principal.as_moderator:
        note = json.dumps({"post_ids": post_ids, "changed": len(changed)})
        await conn.execute(
            SQL_AUDIT, principal.caller.id, f"pmd_batch_{action}", str(principal.target.id), note
        )
    if changed:
        # Only the ids that really changed: listeners invalidate exactly those. At most 128
        # ids of 10 digits, far below NOTIFY's 8000-byte payload limit.
        payload = json.dumps(
            {"user_id": principal.target.id, "action": action, "post_ids": sorted(changed)},
            separators=(",", ":"),
        )
        await conn.execute(SQL_NOTIFY_POSTS, payload)


async def apply_action(
    pool: asyncpg.Pool, principal: Principal, action: Action, post_ids: list[int]
) -> tuple[int, str]:
    """All-or-nothing: returns (posts changed, message)."""
    ensure_unique(post_ids)
    owner = principal.target.id
    async with pool.acquire() as conn, conn.transaction():
        await lock_eligible(conn, owner, post_ids, restorable=action == "restore")
        if action in ("hide", "unhide"):
            sql = SQL_HIDE_BY_MOD if principal.as_moderator else SQL_HIDE_BY_USER
            rows = await conn.fetch(sql, post_ids, action == "hide")
        elif action == "delete":
            rows = await conn.fetch(SQL_DELETE, post_ids)
        else:
            rows = await conn.fetch(SQL_RESTORE, post_ids)
        changed = [r["id"] for r in rows]
        await _after_change(conn, principal, action, post_ids, changed)
    message = f"{_PAST[action]} {_posts(len(changed))}"
    if len(changed) < len(post_ids) and action in _ALREADY:
        message += f" ({len(post_ids) - len(changed)} {_ALREADY[action]})"
    return len(changed), message


async def set_license(
    pool: asyncpg.Pool, principal: Principal, post_ids: list[int], license_id: int | None
) -> tuple[int, str]:
    ensure_unique(post_ids)
    async with pool.acquire() as conn, conn.transaction():
        if license_id is not None and not await conn.fetchval(SQL_LICENSE_EXISTS, license_id):
            raise bad_request(
                f"There is no license with id {license_id}; pick one of the site's licenses "
                "or send null to clear it.",
                slug="unknown-license",
                errors=[FieldError(field="license_id", message="unknown license")],
            )
        await lock_eligible(conn, principal.target.id, post_ids)
        rows = await conn.fetch(SQL_SET_LICENSE, post_ids, license_id)
        changed = [r["id"] for r in rows]
        await _after_change(conn, principal, "license", post_ids, changed)
    unchanged = len(post_ids) - len(changed)
    if license_id is None:
        message = f"Cleared the license of {_posts(len(changed))}"
        already = f"{unchanged} had none"
    else:
        message = f"Changed the license of {_posts(len(changed))}"
        already = f"{unchanged} already had it"
    if unchanged:
        message += f" ({already})"
    return len(changed), message
