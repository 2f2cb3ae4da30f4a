"""The cut-over from the host's own PMD (`import-host-bdrs`): its open requests carried over."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from ...core.named_sql import Named
from ...host.eligibility import MAX_BATCH
from ...host.vault import VaultPathError, contained
from ...storage.zip_names import HOST_FILE_PREFIX
from .job_sql import enqueue_bdr

if TYPE_CHECKING:
    from ...core.db import Conn

log = logging.getLogger(__name__)

PROGRESS_EVERY = 100  # host requests between two progress lines

# The host's table named by schema: unqualified, `batch_download_requests` is the service's own.
_SQL_HOST_ROWS = """
SELECT b.id, b.user_id, u.public_sqid AS user_sqid, b.post_ids, b.include_comments,
       b.include_reactions, b.send_email, b.status, b.file_path, b.file_size_bytes,
       b.artwork_count, b.created_at, b.started_at, b.completed_at, b.expires_at,
       u.id IS NOT NULL AS user_exists, b.expires_at > now() AS unexpired,
       {imported} AS imported
FROM "{schema}".batch_download_requests b
LEFT JOIN "{schema}".users u ON u.id = b.user_id
ORDER BY b.created_at, b.id
"""
_IMPORTED = 'EXISTS (SELECT 1 FROM "{own}".batch_download_requests o WHERE o.id = b.id)'
SQL_HOST_TABLE = "SELECT to_regclass(format('%I.batch_download_requests', $1::text))"
SQL_IMPORT_PENDING = Named("""
INSERT INTO batch_download_requests
    (id, user_id, user_sqid, post_ids, artwork_count, include_comments, include_reactions,
     send_email, created_at, status)
VALUES (:id, :user_id, :user_sqid, :post_ids, :artwork_count, :include_comments,
        :include_reactions, :send_email, :created_at, 'pending')
ON CONFLICT (id) DO NOTHING
RETURNING id
""")
# The host's worker already sent its email: `email_sent_at` keeps the sweep from sending another.
SQL_IMPORT_READY = Named("""
INSERT INTO batch_download_requests
    (id, user_id, user_sqid, post_ids, artwork_count, include_comments, include_reactions,
     send_email, created_at, status, file_path, file_size_bytes, progress_done, started_at,
     completed_at, expires_at, email_sent_at)
VALUES (:id, :user_id, :user_sqid, :post_ids, :artwork_count, :include_comments,
        :include_reactions, :send_email, :created_at, 'ready', :file_path, :file_size_bytes,
        :artwork_count, :started_at, :completed_at, :expires_at, coalesce(:completed_at, now()))
ON CONFLICT (id) DO NOTHING
RETURNING id
""")


@dataclass
class Summary:
    applied: bool
    rebuilt: list[str] = field(default_factory=list)  # pending again, enqueued
    served: list[str] = field(default_factory=list)  # ready, the host's ZIP served until expiry
    already: int = 0  # imported by an earlier run
    left_out: dict[str, list[str]] = field(default_factory=dict)  # why -> ids

    def leave_out(self, why: str, row: asyncpg.Record) -> None:
        self.left_out.setdefault(why, []).append(str(row["id"]))

    def as_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "rebuilt": len(self.rebuilt),
            "served_until_expiry": len(self.served),
            "already_imported": self.already,
            "left_out": {why: len(ids) for why, ids in sorted(self.left_out.items())},
            "left_out_ids": dict(sorted(self.left_out.items())),
        }


async def _enqueue(redis: ArqRedis, bdr_id: uuid.UUID) -> None:
    try:
        await enqueue_bdr(redis, bdr_id)
    except (RedisError, OSError) as exc:  # the row is safe: the every-minute sweep enqueues it
        log.warning("enqueue of imported BDR %s failed (%s); the sweep will", bdr_id, exc)


def _unfit(row: asyncpg.Record) -> str | None:
    if not row["user_exists"]:
        return "user no longer exists"
    post_ids = row["post_ids"] or []
    if not 1 <= row["artwork_count"] <= MAX_BATCH or row["artwork_count"] != len(post_ids):
        return f"artwork_count not 1..{MAX_BATCH} or not the number of post_ids"
    return None


def _host_zip(vault: Path, row: asyncpg.Record) -> Path | None:
    try:
        path = contained(vault, row["file_path"] or "")
    except VaultPathError:
        return None
    return path if path.is_file() else None


async def import_host_bdrs(
    conn: Conn,
    redis: ArqRedis | None,
    vault: Path,
    host_schema: str,
    *,
    apply: bool,
    own_schema: str = "pmd",
) -> Summary:
    """`redis`: needed only to `apply`; a dry run may come before the service's own table exists."""
    if apply and redis is None:
        raise ValueError("applying the import enqueues: it needs Redis")
    summary = Summary(applied=apply)
    if await conn.fetchval(SQL_HOST_TABLE, host_schema) is None:
        log.info("import-host-bdrs: the host has no requests table of its own: nothing to do")
        return summary  # the host never had its own PMD: nothing to carry over
    own = await conn.fetchval(SQL_HOST_TABLE, own_schema)
    imported = _IMPORTED.format(own=own_schema) if own is not None else "false"
    rows = await conn.fetch(_SQL_HOST_ROWS.format(schema=host_schema, imported=imported))
    log.info("import-host-bdrs: %d requests in the host's table", len(rows))
    for done, row in enumerate(rows):
        if done and done % PROGRESS_EVERY == 0:
            log.info("import-host-bdrs: %d of %d requests looked at", done, len(rows))
        if row["imported"]:
            summary.already += 1
            continue
        status = row["status"]
        if status not in ("pending", "processing", "ready"):
            summary.leave_out(f"{status} at the host", row)
            continue
        if (why := _unfit(row)) is not None:
            summary.leave_out(why, row)
            continue
        if status in ("pending", "processing"):
            if apply and await conn.fetchval(*SQL_IMPORT_PENDING.bind(dict(row))) is not None:
                assert redis is not None
                await _enqueue(redis, row["id"])
            summary.rebuilt.append(str(row["id"]))
            continue
        if not row["unexpired"]:
            summary.leave_out("ready but expired", row)
            continue
        path = _host_zip(vault, row)
        if path is None:
            summary.leave_out("ready but its ZIP is not in the vault", row)
            continue
        size = row["file_size_bytes"] or path.stat().st_size
        if apply:
            served = {"file_path": HOST_FILE_PREFIX + row["file_path"], "file_size_bytes": size}
            await conn.fetchval(*SQL_IMPORT_READY.bind(dict(row) | served))
        summary.served.append(str(row["id"]))
    log.info("import-host-bdrs: all %d requests looked at", len(rows))
    return summary
