"""Creating, listing, cancelling and serving full exports: the server's side."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from arq.connections import ArqRedis

from ...core.codes import Code
from ...core.limits import NEWEST_ITEMS
from ...core.locks import SQL_XACT_LOCK, AdvisoryLock
from ...core.problems import (
    FieldError,
    ProblemError,
    bad_request,
    conflict,
    forbidden,
    gone,
    not_found,
)
from ...core.settings import Settings
from ...host.access import Principal
from ...storage.budget import human_bytes
from ...storage.zip_files import StoredZip, ZipFiles, ZipMissing
from .incremental import added_count, changed_count, followed, parse_since, removed
from .job_sql import COUNTS_FOR_COOLDOWN, SQL_TOUCH, enqueue_export
from .schedule import active, cancel, checked_repeat, refuse_if_scheduled, schedule
from .schemas import (
    BAGIT,
    LAYOUTS,
    ExportItem,
    ExportLimits,
    ExportList,
    ExportRequest,
    NothingChanged,
    export_item,
    part_filename,
)

log = logging.getLogger(__name__)

SQL_RUNNING = """
SELECT id, status, progress_done, artwork_count FROM exports
WHERE user_id = $1 AND status IN ('pending', 'processing')
"""
# The cooldown runs from the newest export that counts, full ones only unless $2 (incremental).
SQL_SECONDS_SINCE_LAST = f"""
SELECT extract(epoch FROM now() - max(created_at))::float8 FROM exports e
WHERE user_id = $1 AND {COUNTS_FOR_COOLDOWN} AND ($2 OR e.follows_id IS NULL)
"""
SQL_ARTWORKS = """
SELECT count(*) FROM posts WHERE owner_id = $1 AND kind = 'artwork' AND NOT deleted_by_user
"""
SQL_INSERT = """
INSERT INTO exports (user_id, user_sqid, part_bytes, include_comments, include_reactions,
                     send_email, request_id, artwork_count, include_upscaled, follows_id,
                     follows_started_at, base_post_ids, layout)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
RETURNING export_payload(exports)::text
"""
_ITEMS = f"SELECT export_payload(e)::text, {added_count('e')} FROM exports e"
SQL_NEWEST = f"{_ITEMS} WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT {NEWEST_ITEMS}"
SQL_ONE = f"{_ITEMS} WHERE id = $1 AND user_id = $2"
SQL_STATUS = "SELECT status, expires_at FROM exports WHERE id = $1 AND user_id = $2"
# Cancelling or removing ends every part in one transaction, the export's row updated last.
SQL_LOCK_ONE = "SELECT status FROM exports WHERE id = $1 AND user_id = $2 FOR UPDATE"
SQL_END_PARTS = """
UPDATE export_parts SET status = CASE WHEN status = 'ready' THEN 'expired' ELSE 'cancelled' END
WHERE export_id = $1 AND status <> 'expired'
RETURNING file_path
"""
# A removal is `expired` with `removed_at` set.
SQL_CANCEL = """
UPDATE exports
SET status = CASE WHEN status IN ('pending', 'processing') THEN 'cancelled' ELSE 'expired' END,
    removed_at = CASE WHEN status IN ('pending', 'processing') THEN NULL ELSE now() END,
    completed_at = coalesce(completed_at, now()), claim_token = NULL, heartbeat_at = NULL,
    retry_at = NULL, parts_version = parts_version + 1
WHERE id = $1
"""
SQL_PART = """
SELECT p.status, p.file_path, p.file_size_bytes, p.sha256, e.status AS export_status,
       e.expires_at, e.layout,
       (SELECT count(*) FROM export_parts q WHERE q.export_id = e.id) AS part_count
FROM exports e JOIN export_parts p ON p.export_id = e.id
WHERE e.id = $1 AND e.user_id = $2 AND p.number = $3
"""
SQL_PART_GONE = "UPDATE export_parts SET status = 'expired' WHERE export_id = $1 AND number = $2"
SQL_READY_PARTS = """
SELECT p.number, p.sha256, e.layout,
       (SELECT count(*) FROM export_parts q WHERE q.export_id = e.id) AS n
FROM exports e JOIN export_parts p ON p.export_id = e.id
WHERE e.id = $1 AND e.user_id = $2 AND p.status = 'ready'
ORDER BY p.number
"""

NO_EXPORT = Code.EXPORT_NOT_FOUND


def owner_only(principal: Principal) -> None:
    if principal.as_moderator:
        raise forbidden(
            "A full export is its owner's alone: a moderator cannot request, see or download "
            "another user's export. Use batch downloads (POST /api/pmd/bdr) instead.",
            code=Code.EXPORT_OWNER_ONLY,
        )


def _part_bytes(body: ExportRequest, settings: Settings) -> int:
    low, high = settings.export_min_part_bytes, settings.export_max_part_bytes
    size = body.part_bytes if body.part_bytes is not None else settings.export_part_bytes
    if not low <= size <= high:
        message = (
            f"must lie within {low} ({human_bytes(low)}) and {high} ({human_bytes(high)}) bytes"
        )
        raise ProblemError(
            400, "invalid-part-size", "Bad Request",
            f"`part_bytes` {message}; got {size}. Leave it out for {human_bytes(settings.export_part_bytes)}.",
            errors=[FieldError(field="part_bytes", message=message)],
            extra={"min_part_bytes": low, "max_part_bytes": high}, code=Code.INVALID_PART_SIZE,
        )  # fmt: skip
    return size


def _layout(body: ExportRequest) -> str | None:
    """The layout asked for, None when left out, or a 400 naming the layouts."""
    if body.layout is None or body.layout in LAYOUTS:
        return body.layout
    names = " or ".join(f"`{name}`" for name in LAYOUTS)
    raise bad_request(
        f"`layout` must be {names}; got {body.layout[:40]!r}. Leave it out for a BagIt bag.",
        slug="invalid-layout",
        errors=[FieldError(field="layout", message=f"must be {names}")],
        code=Code.INVALID_LAYOUT,
    )


async def create(
    pool: asyncpg.Pool,
    principal: Principal,
    body: ExportRequest,
    settings: Settings,
    request_id: str | None,
) -> ExportItem | NothingChanged:
    owner_only(principal)
    # The request itself first: a bad one is a 400 naming it, whatever the state (409, 429).
    part_bytes = _part_bytes(body, settings)
    asked_layout = _layout(body)
    since = parse_since(body.since)
    repeat = checked_repeat(body, settings)
    user = principal.target
    async with pool.acquire() as conn, conn.transaction():
        # One request of a user at a time checks and inserts: two cannot both pass the cooldown.
        await conn.execute(SQL_XACT_LOCK, AdvisoryLock.EXPORT_START, user.id)
        # What `since` names is part of the request: a bad one is a 400 whatever the state.
        follows = await followed(conn, user.id, since) if since is not None else None
        if repeat is not None:
            await refuse_if_scheduled(conn, user.id)
        running = await conn.fetchrow(SQL_RUNNING, user.id)
        if running is not None:
            done, total = running["progress_done"], running["artwork_count"]
            progress = f"{done} of {total} artworks" if total else "being planned"
            raise ProblemError(
                409, "export-running", "Conflict",
                f"Export {running['id']} is already {running['status']} ({progress}); wait for "
                f"it, or cancel it with DELETE /api/pmd/exports/{running['id']}.",
                extra={"export_id": str(running["id"]), "progress": {"done": done, "total": total}},
                code=Code.EXPORT_RUNNING,
            )  # fmt: skip
        incremental = follows is not None
        elapsed = await conn.fetchval(SQL_SECONDS_SINCE_LAST, user.id, incremental)
        cooldown = _cooldown(settings, incremental=incremental)
        if elapsed is not None and elapsed < cooldown:
            wait = max(1, int(cooldown - elapsed + 0.999))
            kind = "incremental export" if incremental else "full export"
            raise ProblemError(
                429, "export-cooldown", "Too Many Requests",
                f"One {kind} per {_duration(cooldown)}: the next can be requested in "
                f"{_duration(wait)}. The parts of the last one stay downloadable until they expire.",
                headers={"Retry-After": str(wait)}, extra={"retry_after_seconds": wait},
                code=Code.EXPORT_COOLDOWN,
            )  # fmt: skip
        if follows is not None:
            count = await changed_count(conn, user.id, follows)
            if not count and not await removed(conn, user.id, follows.post_ids):
                return NothingChanged(
                    nothing_changed=True,
                    message=f"Nothing changed since export {follows.export_id} started "
                    f"({follows.started_at:%Y-%m-%d %H:%M} UTC): no export was made.",
                    since_export_id=follows.export_id,
                    changed_since=follows.started_at,
                )
        else:
            count = await conn.fetchval(SQL_ARTWORKS, user.id)
        if not count and follows is None:
            raise ProblemError(
                422, "nothing-to-export", "Unprocessable Content",
                "There is no artwork to export: post an artwork first (deleted posts and "
                "playlists are not exported).", code=Code.NOTHING_TO_EXPORT,
            )  # fmt: skip
        # A follower asking for no layout keeps the one of what it follows.
        layout = asked_layout or (follows.layout if follows is not None else BAGIT)
        payload = await conn.fetchval(
            SQL_INSERT, user.id, user.public_sqid, part_bytes, body.include_comments,
            body.include_reactions, body.send_email, request_id, count, body.include_upscaled,
            *((follows.export_id, follows.started_at, follows.post_ids) if follows else (None,) * 3),
            layout,
        )  # fmt: skip
        item = export_item(payload)
        if repeat is not None:
            await schedule(conn, user.id, user.public_sqid, repeat, item)
    log.info("export %s requested: %d artworks of user %d", item.id, count, user.id)
    return item


def _cooldown(settings: Settings, *, incremental: bool) -> int:
    if incremental:
        return settings.export_incremental_cooldown_seconds
    return settings.export_cooldown_seconds


def _duration(seconds: int) -> str:
    if seconds >= 86400:
        days, hours = divmod(seconds, 86400)
        return f"{days} d {hours // 3600} h" if hours >= 3600 else f"{days} d"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{max(1, seconds // 60)} min" if seconds >= 60 else f"{seconds} s"


async def enqueue(redis: ArqRedis, export_id: uuid.UUID) -> None:
    try:
        await enqueue_export(redis, export_id)
    except Exception as exc:  # Redis down: the row is safe; the every-minute sweep enqueues it
        log.warning("enqueue of export %s failed (%s); the sweep will pick it up", export_id, exc)


async def newest(pool: asyncpg.Pool, principal: Principal, settings: Settings) -> ExportList:
    """The 20 newest, the bounds of a request, and when the cooldown lets a new one start."""
    owner_only(principal)
    user_id = principal.target.id
    items = [export_item(r[0], r[1]) for r in await pool.fetch(SQL_NEWEST, user_id)]
    limits = ExportLimits(
        min_part_bytes=settings.export_min_part_bytes,
        max_part_bytes=settings.export_max_part_bytes,
        default_part_bytes=settings.export_part_bytes,
        cooldown_seconds=settings.export_cooldown_seconds,
        incremental_cooldown_seconds=settings.export_incremental_cooldown_seconds,
        repeat_min_days=settings.export_repeat_min_days,
        repeat_max_days=settings.export_repeat_max_days,
        repeat_max_times=settings.export_repeat_max_times,
    )
    return ExportList(
        items=items, limits=limits, schedule=await active(pool, user_id),
        next_export_at=await _next_at(pool, user_id, settings, incremental=False),
        next_incremental_export_at=await _next_at(pool, user_id, settings, incremental=True),
    )  # fmt: skip


async def cancel_schedule(pool: asyncpg.Pool, principal: Principal) -> None:
    owner_only(principal)
    await cancel(pool, principal.target.id)


async def _next_at(
    pool: asyncpg.Pool, user_id: int, settings: Settings, *, incremental: bool
) -> datetime | None:
    elapsed = await pool.fetchval(SQL_SECONDS_SINCE_LAST, user_id, incremental)
    cooldown = _cooldown(settings, incremental=incremental)
    if elapsed is None or elapsed >= cooldown:
        return None
    return datetime.now(UTC) + timedelta(seconds=cooldown - elapsed)


async def get(pool: asyncpg.Pool, export_id: uuid.UUID, principal: Principal) -> ExportItem:
    owner_only(principal)
    row = await pool.fetchrow(SQL_ONE, export_id, principal.target.id)
    if row is None:
        raise not_found(f"There is no export {export_id} for this user.", code=NO_EXPORT)
    return export_item(row[0], row[1])


async def cancel_or_remove(
    pool: asyncpg.Pool, files: ZipFiles, export_id: uuid.UUID, principal: Principal
) -> None:
    """Running → cancelled; finished → expired with `removed_at` set; no part file is left."""
    owner_only(principal)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(SQL_LOCK_ONE, export_id, principal.target.id)
        if row is None:
            raise not_found(f"There is no export {export_id} for this user.", code=NO_EXPORT)
        if row["status"] not in ("pending", "processing", "ready", "failed"):
            return  # cancelled or expired already: nothing left to remove
        paths = [r[0] for r in await conn.fetch(SQL_END_PARTS, export_id) if r[0]]
        await conn.execute(SQL_CANCEL, export_id)
    for path in paths:
        await files.remove(path)


async def part_download(
    pool: asyncpg.Pool, files: ZipFiles, export_id: uuid.UUID, number: int, principal: Principal
) -> tuple[StoredZip, str, str | None]:
    """The part's ZIP, its file name and its SHA-256 (hex)."""
    owner_only(principal)
    row = await pool.fetchrow(SQL_PART, export_id, principal.target.id, number)
    if row is None:
        if await pool.fetchrow(SQL_STATUS, export_id, principal.target.id) is None:
            raise not_found(f"There is no export {export_id} for this user.", code=NO_EXPORT)
        raise not_found(f"Export {export_id} has no part {number}.", code=Code.PART_NOT_FOUND)
    export_status, expires_at = row["export_status"], row["expires_at"]
    if export_status in ("expired", "cancelled") or (
        expires_at is not None and expires_at <= datetime.now(UTC)
    ):
        raise gone(
            f"Export {export_id} is {export_status}; its parts are gone. Request a new export.",
            code=Code.EXPORT_EXPIRED,
        )
    if row["status"] != "ready":
        if export_status in ("pending", "processing"):
            raise conflict(
                f"Part {number} of export {export_id} is still being built; it can be "
                "downloaded once its status is ready (watch /api/pmd/bdr/sse).",
                slug="not-ready",
                code=Code.PART_NOT_READY,
            )
        raise conflict(
            f"Part {number} of export {export_id} was not built (the export {export_status}); "
            "there is no file.",
            slug="no-file",
            code=Code.PART_NO_FILE,
        )
    try:
        stored = await files.locate(row["file_path"] or "", row["file_size_bytes"])
    except ZipMissing:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(SQL_PART_GONE, export_id, number)
            await conn.execute(SQL_TOUCH, export_id)
        raise gone(
            f"The file of part {number} of export {export_id} is no longer available; "
            "request a new export.",
            code=Code.EXPORT_EXPIRED,
        ) from None
    name = part_filename(export_id, number, row["part_count"], row["layout"])
    return stored, name, row["sha256"]


async def sha256sums(pool: asyncpg.Pool, export_id: uuid.UUID, principal: Principal) -> str:
    """`sha256sum -c SHA256SUMS`, run where the parts were saved, checks them all."""
    owner_only(principal)
    if await pool.fetchrow(SQL_STATUS, export_id, principal.target.id) is None:
        raise not_found(f"There is no export {export_id} for this user.", code=NO_EXPORT)
    rows = await pool.fetch(SQL_READY_PARTS, export_id, principal.target.id)
    return "".join(
        f"{r['sha256']}  {part_filename(export_id, r['number'], r['n'], r['layout'])}\n"
        for r in rows
    )
