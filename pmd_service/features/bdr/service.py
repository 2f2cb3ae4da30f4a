"""Creating, listing, cancelling and serving BDRs: the server's side of the download path."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

import asyncpg
import msgspec
from arq.connections import ArqRedis

from ...core.codes import Code
from ...core.limits import NEWEST_ITEMS, UTC_DAY_START, seconds_to_next_utc_day
from ...core.locks import SQL_XACT_LOCK, AdvisoryLock
from ...core.named_sql import Named
from ...core.problems import ProblemError, bad_request, forbidden, gone, not_found
from ...host.access import Principal
from ...host.eligibility import ensure_unique, lock_eligible
from ...storage.budget import Limits, human_bytes, too_large
from ...storage.zip_files import StoredZip, ZipFiles, ZipMissing
from .job_sql import enqueue_bdr
from .schemas import ITEM_COLUMNS, BdrItem, BdrRequest, DailyLimit, bdr_item

if TYPE_CHECKING:
    from ...core.db import Conn

log = logging.getLogger(__name__)

# What a caller asked for today, their own and as a moderator (never the user's quota).
SQL_USED_TODAY = f"""
SELECT count(*) AS requests, coalesce(sum(estimated_bytes), 0)::bigint AS bytes
FROM batch_download_requests
WHERE ((user_id = $1 AND requested_by IS NULL) OR requested_by = $1)
  AND created_at >= {UTC_DAY_START}
"""
# The artworks' declared size: native files, and layers files when they go in ($2).
SQL_DECLARED_BYTES = """
SELECT (SELECT coalesce(sum(file_bytes), 0) FROM post_files
        WHERE post_id = ANY($1::int[]) AND is_native)::bigint
     + CASE WHEN $2 THEN (SELECT coalesce(sum(mkpx_file_bytes), 0) FROM posts
                          WHERE id = ANY($1::int[])) ELSE 0 END::bigint
"""
# Inserted unannounced: its first event is published by the announcer, after the reply.
SQL_INSERT = Named(f"""
INSERT INTO batch_download_requests
    (user_id, user_sqid, requested_by, post_ids, artwork_count, include_comments,
     include_reactions, send_email, request_id, estimated_bytes, announced, include_layers)
VALUES (:user_id, :user_sqid, :requested_by, :post_ids, cardinality(:post_ids::int[]),
        :include_comments, :include_reactions, :send_email, :request_id, :estimated_bytes, false,
        :include_layers)
RETURNING {ITEM_COLUMNS}
""")
# A download of exactly these posts and contents that still serves: the newest such one.
SQL_SAME_DOWNLOAD = Named("""
SELECT id, status, created_at FROM batch_download_requests
WHERE user_id = :user_id AND status IN ('pending', 'processing', 'ready')
  AND (expires_at IS NULL OR expires_at > now())
  AND artwork_count = cardinality(:post_ids::int[])
  AND post_ids @> :post_ids::int[] AND post_ids <@ :post_ids::int[]
  AND include_comments = :include_comments AND include_reactions = :include_reactions
  AND include_layers = :include_layers
ORDER BY created_at DESC, id DESC LIMIT 1
""")
SQL_ANNOUNCE = "UPDATE batch_download_requests SET announced = true WHERE id = $1 AND NOT announced"
# A moderator's actions on a user's downloads, in the host's audit log (its id has no default).
SQL_AUDIT = """
INSERT INTO audit_logs (id, actor_id, action, target_type, target_id, note)
VALUES (gen_random_uuid(), $1, $2, 'user', $3, $4)
"""
# The daily cleanup's (upkeep/cleanup.py): only the current hour's reads still decide anything.
_READ_PURGE = "hour < :clock::timestamptz - interval '1 day'"
AUDITED_READS_PAST = f"SELECT count(*) FROM audited_reads WHERE {_READ_PURGE}"
SQL_PURGE_AUDITED_READS = Named(f"DELETE FROM audited_reads WHERE {_READ_PURGE}")

# A read, audited once per moderator, file and hour: a resumed download's ranges are one row.
SQL_AUDIT_READ = """
WITH first AS (
    INSERT INTO audited_reads (actor_id, action, file, hour)
    VALUES ($1, $2, $4, date_trunc('hour', now()))
    ON CONFLICT DO NOTHING
    RETURNING 1
)
INSERT INTO audit_logs (id, actor_id, action, target_type, target_id, note)
SELECT gen_random_uuid(), $1, $2, 'user', $3, $4 FROM first
"""
SQL_NEWEST = f"""
SELECT {ITEM_COLUMNS} FROM batch_download_requests
WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT {NEWEST_ITEMS}
"""
SQL_ONE = f"""
SELECT {ITEM_COLUMNS}, file_path, file_sha256 FROM batch_download_requests
WHERE id = $1 AND user_id = $2
"""
SQL_CANCEL = f"""
UPDATE batch_download_requests
SET status = 'cancelled', completed_at = now(), claim_token = NULL, heartbeat_at = NULL,
    retry_at = NULL, announced = true
WHERE id = $1 AND user_id = $2 AND status IN ('pending', 'processing')
RETURNING {ITEM_COLUMNS}
"""
# Its file is lost: expired, as if its date had passed.
SQL_EXPIRE = """
UPDATE batch_download_requests SET status = 'expired'
WHERE id = $1 AND status = 'ready'
"""
# Removed on request: expired too (the status set is the contract), `removed_at` set.
SQL_REMOVE = """
UPDATE batch_download_requests SET status = 'expired', removed_at = now()
WHERE id = $1 AND status = 'ready'
RETURNING file_path
"""


def _over_the_day(why: str, code: Code, **details: int) -> ProblemError:
    wait = seconds_to_next_utc_day()
    return ProblemError(
        429,
        "daily-limit",
        "Too Many Requests",
        f"{why}; it resets at midnight UTC, in {wait // 3600} h {wait % 3600 // 60} min.",
        headers={"Retry-After": str(wait)},
        code=code,
        details={"retry_after_seconds": wait, **details},
    )


_SERVES = {
    "pending": "is waiting for a worker",
    "processing": "is being built",
    "ready": "is ready to download",
}


async def _refuse_a_repeat(conn: Conn, user_id: int, body: BdrRequest) -> None:
    """409 naming the download that already holds exactly what `body` asks for, if any."""
    asked = msgspec.structs.asdict(body) | {"user_id": user_id}
    same = await conn.fetchrow(*SQL_SAME_DOWNLOAD.bind(asked))
    if same is None:
        return
    n = len(body.post_ids)
    raise ProblemError(
        409,
        "bdr-repeated",
        "Conflict",
        f"A download of exactly {'this artwork' if n == 1 else f'these {n} artworks'} "
        f"{_SERVES[same['status']]} (download {same['id']}, requested "
        f"{same['created_at']:%Y-%m-%d %H:%M} UTC): use that one, which spends nothing of "
        "today's limit, or ask again with `repeat: true` for a new one.",
        code=Code.BDR_REPEATED,
        details={"bdr_id": str(same["id"]), "status": same["status"]},
    )


async def create(
    pool: asyncpg.Pool,
    principal: Principal,
    body: BdrRequest,
    limits: Limits,
    request_id: str | None,
) -> BdrItem:
    """Check eligibility, size and quota and commit the row, unannounced (see announcer.py)."""
    ensure_unique(body.post_ids)
    user_id = principal.target.id
    requested_by = principal.caller.id if principal.as_moderator else None
    requester = principal.caller.id
    async with pool.acquire() as conn, conn.transaction():
        # Checked before the day's count (a 400, not a 429); the posts stay locked until commit.
        await lock_eligible(conn, user_id, body.post_ids)
        if body.repeat is False:
            await _refuse_a_repeat(conn, user_id, body)
        size = await conn.fetchval(SQL_DECLARED_BYTES, body.post_ids, body.include_layers)
        if size > limits.bytes_a_request:
            raise ProblemError(
                400,
                "too-large",
                "Bad Request",
                too_large(size, limits.bytes_a_request, len(body.post_ids)),
                extra={"size_bytes": size, "limit_bytes": limits.bytes_a_request},
                code=Code.BDR_TOO_LARGE,
            )
        # Concurrent requests of one requester count and insert one at a time: no quota overrun.
        await conn.execute(SQL_XACT_LOCK, AdvisoryLock.BDR_QUOTA, requester)
        used = await conn.fetchrow(SQL_USED_TODAY, requester)
        assert used is not None  # an aggregate always has its row
        if used["requests"] >= limits.requests_a_day:
            raise _over_the_day(
                f"The limit of {limits.requests_a_day} download requests per day is reached",
                Code.BDR_DAILY_LIMIT,
                limit=limits.requests_a_day,
            )
        if used["bytes"] + size > limits.bytes_a_day:
            raise _over_the_day(
                f"This download ({human_bytes(size)}) would take today's downloads past the "
                f"limit of {human_bytes(limits.bytes_a_day)} a day "
                f"({human_bytes(used['bytes'])} asked for so far)",
                Code.BDR_DAILY_BYTES_LIMIT,
                limit_bytes=limits.bytes_a_day,
            )
        new = {
            "user_id": user_id,
            "user_sqid": principal.target.public_sqid,
            "requested_by": requested_by,
            "request_id": request_id,
            "estimated_bytes": size,
        }
        row = await conn.fetchrow(*SQL_INSERT.bind(msgspec.structs.asdict(body) | new))
        assert row is not None
        if principal.as_moderator:
            note = json.dumps({"bdr_id": str(row["id"]), "post_ids": body.post_ids})
            await conn.execute(
                SQL_AUDIT, principal.caller.id, "pmd_batch_download", str(user_id), note
            )
    item = bdr_item(row)
    log.info("BDR %s requested: %d artworks of user %d", item.id, item.artwork_count, user_id)
    return item


async def mark_announced(pool: asyncpg.Pool, bdr_id: uuid.UUID) -> bool:
    """Publish a new request's first event; a failure is left to the every-minute sweep."""
    try:
        await pool.execute(SQL_ANNOUNCE, bdr_id)
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("announcing BDR %s failed (%s); the sweep will", bdr_id, exc)
        return False
    return True


async def enqueue_or_sweep(redis: ArqRedis, bdr_id: uuid.UUID) -> None:
    try:
        await enqueue_bdr(redis, bdr_id)
    except Exception as exc:  # Redis down: the row is safe; the every-minute sweep enqueues it
        log.warning("enqueue of BDR %s failed (%s); the sweep will pick it up", bdr_id, exc)


async def audit(
    pool: asyncpg.Pool, by: Principal, action: str, bdr_id: uuid.UUID, sql: str = SQL_AUDIT
) -> None:
    """A moderator's removal (or, with SQL_AUDIT_READ, read) of a user's ZIP, in the audit log."""
    if by.as_moderator:
        note = json.dumps({"bdr_id": str(bdr_id)})
        await pool.execute(sql, by.caller.id, action, str(by.target.id), note)


async def newest(pool: asyncpg.Pool, user_id: int) -> list[BdrItem]:
    return [bdr_item(r) for r in await pool.fetch(SQL_NEWEST, user_id)]


async def used_today(pool: asyncpg.Pool, requester: int, limits: Limits) -> DailyLimit:
    """What `requester` spent of today's limits, as `create` counts it."""
    used = await pool.fetchrow(SQL_USED_TODAY, requester)
    assert used is not None  # an aggregate always has its row
    today = datetime.now(UTC).date()
    return DailyLimit(
        limit=limits.requests_a_day,
        used=used["requests"],
        limit_bytes=limits.bytes_a_day,
        used_bytes=used["bytes"],
        resets_at=datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC),
    )


async def _row(pool: asyncpg.Pool, bdr_id: uuid.UUID, user_id: int) -> asyncpg.Record:
    row: asyncpg.Record | None = await pool.fetchrow(SQL_ONE, bdr_id, user_id)
    if row is None:
        raise not_found(
            f"There is no download request {bdr_id} for this user.", code=Code.BDR_NOT_FOUND
        )
    return row


async def get(pool: asyncpg.Pool, bdr_id: uuid.UUID, user_id: int) -> BdrItem:
    return bdr_item(await _row(pool, bdr_id, user_id))


async def cancel_or_remove(
    pool: asyncpg.Pool, files: ZipFiles, bdr_id: uuid.UUID, by: Principal
) -> None:
    """pending/processing → cancelled; ready → ZIP removed, expired with `removed_at` set."""
    user_id = by.target.id
    row = await _row(pool, bdr_id, user_id)
    if row["requested_by"] is not None and not by.as_moderator:
        raise forbidden(
            f"Download request {bdr_id} was made by a moderator; only a moderator can cancel "
            "or delete it. It expires on its own.",
            code=Code.BDR_MADE_BY_MODERATOR,
        )
    if row["status"] in ("pending", "processing"):
        if await pool.fetchrow(SQL_CANCEL, bdr_id, user_id) is not None:
            return
        row = await _row(pool, bdr_id, user_id)  # it finished meanwhile: treat as such
    if row["status"] == "ready":
        await files.remove(await pool.fetchval(SQL_REMOVE, bdr_id))


def download_filename(bdr_id: uuid.UUID) -> str:
    return f"makapix-artworks-{str(bdr_id)[:8]}.zip"


async def download(
    pool: asyncpg.Pool, files: ZipFiles, bdr_id: uuid.UUID, by: Principal, *, reads: bool
) -> tuple[StoredZip, str, str | None]:
    """The ZIP, its file name and its SHA-256 (None: a host's ZIP); `reads` audits a moderator."""
    row = await _row(pool, bdr_id, by.target.id)
    status = row["status"]
    if status in ("pending", "processing"):
        raise bad_request(
            f"Download not ready (status: {status}): request {bdr_id} is still being built; "
            "wait for it to be ready "
            "(watch /api/pmd/bdr/sse or poll /api/pmd/bdr/{id}).",
            slug="not-ready",
            code=Code.BDR_NOT_READY,
            details={"status": status},
        )
    if status in ("failed", "cancelled"):
        raise bad_request(
            f"Download not ready (status: {status}): request {bdr_id} has no file. Request a "
            "new download.",
            slug="no-file",
            code=Code.BDR_NO_FILE,
            details={"status": status},
        )
    expires_at = row["expires_at"]
    if status == "expired" or (expires_at is not None and expires_at <= datetime.now(UTC)):
        raise gone(
            f"Download request {bdr_id} has expired; request a new download.",
            code=Code.BDR_EXPIRED,
        )
    try:
        stored = await files.locate(row["file_path"] or "", row["file_size_bytes"])
    except ZipMissing:
        await pool.execute(SQL_EXPIRE, bdr_id)
        raise gone(
            f"The file of download request {bdr_id} is no longer available; request a new download.",
            code=Code.BDR_EXPIRED,
        ) from None
    if reads:
        await audit(pool, by, "pmd_bdr_download", bdr_id, SQL_AUDIT_READ)
    return stored, download_filename(bdr_id), row["file_sha256"]
