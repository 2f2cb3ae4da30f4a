"""Daily: expire old downloads, purge old rows and events, tidy the BDR folder or bucket.

`cleanup_dry_run` (`python -m pmd_service cleanup --dry-run`) counts what a run would do, with
each statement's rows read by a SELECT of its own, in a read-only transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import obstore
from obstore.store import S3Store

from ..core.objects import S3Access, StoreUrl, incomplete_uploads
from ..exports.service import COUNTS_FOR_COOLDOWN
from ..host.vault import (
    BDR_PREFIX,
    EXPORTS_FOLDER,
    OWN_TEMP_RE,
    OWN_ZIP_RE,
    VaultPathError,
    bdr_zip_path,
    is_host_file,
)
from ..jobs.context import state
from ..storage.object_tidy import SQL_LIVE_RUNS, abort_dead_uploads, remove_orphan_objects
from ..storage.object_tidy import SQL_READY_FILES as SQL_READY_OBJECTS
from ..storage.object_tidy import _own as own_object

if TYPE_CHECKING:
    from ..core.db import Conn

log = logging.getLogger(__name__)

TERMINAL_RETENTION_DAYS = 14
TEMP_MAX_AGE_SECONDS = 3600

SQL_EXPIRE_DUE = """
UPDATE batch_download_requests SET status = 'expired'
WHERE status = 'ready' AND expires_at <= now()
RETURNING id, file_path
"""
SQL_PURGE_TERMINAL = """
DELETE FROM batch_download_requests
WHERE status IN ('failed', 'expired', 'cancelled')
  AND coalesce(completed_at, created_at) < now() - make_interval(days => $1)
"""
# Of the ZIPs found on disk, those a ready row still points at (all others are orphans: a run
# whose commit failed after its rename, or a row purged while its file was kept).
SQL_READY_FILES = """
SELECT file_path FROM batch_download_requests
WHERE status = 'ready' AND file_path = ANY($1::text[])
"""
# Exports: ready (or failed, with the parts it built) past their expiry → expired, parts gone.
SQL_EXPIRE_EXPORTS_DUE = """
WITH due AS (
    UPDATE exports SET status = 'expired', parts_version = parts_version + 1
    WHERE status IN ('ready', 'failed') AND expires_at <= now()
    RETURNING id
)
UPDATE export_parts p SET status = 'expired'
FROM due WHERE p.export_id = due.id AND p.status = 'ready'
RETURNING p.file_path
"""
# An export that counts for the cooldown stays while it runs ($2, EXPORT_COOLDOWN_SECONDS,
# which may outlast the 14 days): purged, it would let the next export start at once.
_IN_COOLDOWN = f"({COUNTS_FOR_COOLDOWN} AND e.created_at > now() - make_interval(secs => $2))"
# The newest export of a user that was ready stays (its files expire as any): the next
# incremental export follows it (`since: last`, a recurring schedule).
_FOLLOWED_NEXT = """(
    e.covered_post_ids IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM exports n WHERE n.user_id = e.user_id AND n.covered_post_ids IS NOT NULL
          AND (n.created_at, n.id) > (e.created_at, e.id))
)"""
SQL_PURGE_EXPORTS = f"""
DELETE FROM exports e
WHERE status IN ('failed', 'expired', 'cancelled')
  AND (expires_at IS NULL OR expires_at <= now())
  AND coalesce(completed_at, created_at) < now() - make_interval(days => $1)
  AND NOT {_IN_COOLDOWN}
  AND NOT {_FOLLOWED_NEXT}
"""
SQL_READY_PARTS = """
SELECT file_path FROM export_parts WHERE status = 'ready' AND file_path = ANY($1::text[])
"""
SQL_PURGE_EVENTS = "DELETE FROM bdr_events WHERE created_at < now() - interval '1 day'"
# No foreign key reaches the host's tables (creating one would lock them), so rows of users the
# host deleted, and marks of posts no longer deleted (or gone), are tidied here.
SQL_PURGE_USERS_GONE = """
DELETE FROM batch_download_requests b
WHERE status IN ('failed', 'expired', 'cancelled')
  AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = b.user_id)
"""
# A moderator's reads audited this hour: only the current hour's rows still decide anything.
SQL_PURGE_AUDITED_READS = "DELETE FROM audited_reads WHERE hour < now() - interval '1 day'"
# The bulk actions' undo history past its 24 hours (posts/undo.py), with their posts' rows.
SQL_PURGE_UNDO_HISTORY = """
WITH gone AS (
    DELETE FROM bulk_actions WHERE created_at < now() - interval '24 hours' RETURNING id
)
DELETE FROM bulk_action_posts WHERE action_id IN (SELECT id FROM gone)
"""
SQL_PURGE_MODERATOR_MARKS = """
DELETE FROM moderator_deletions m
WHERE NOT EXISTS (SELECT 1 FROM posts p WHERE p.id = m.post_id AND p.deleted_by_user)
"""

# The dry run: the rows each statement above would change, read instead. A row the first step
# would expire counts as expired for the purges after it, as in a run.
_TERMINAL_AFTER_EXPIRY = (
    "(status IN ('failed', 'expired', 'cancelled') OR (status = 'ready' AND expires_at <= now()))"
)
SQL_EXPIRE_DUE_PREVIEW = """
SELECT id, file_path FROM batch_download_requests
WHERE status = 'ready' AND expires_at <= now()
"""
SQL_EXPIRE_EXPORTS_DUE_PREVIEW = """
SELECT p.file_path FROM export_parts p JOIN exports e ON e.id = p.export_id
WHERE e.status IN ('ready', 'failed') AND e.expires_at <= now() AND p.status = 'ready'
"""
SQL_PURGE_TERMINAL_PREVIEW = f"""
SELECT count(*) FROM batch_download_requests
WHERE {_TERMINAL_AFTER_EXPIRY}
  AND coalesce(completed_at, created_at) < now() - make_interval(days => $1)
"""
SQL_PURGE_EVENTS_PREVIEW = (
    "SELECT count(*) FROM bdr_events WHERE created_at < now() - interval '1 day'"
)
# Those the purge above leaves (younger), whose user the host deleted.
SQL_PURGE_USERS_GONE_PREVIEW = f"""
SELECT count(*) FROM batch_download_requests b
WHERE {_TERMINAL_AFTER_EXPIRY}
  AND coalesce(completed_at, created_at) >= now() - make_interval(days => $1)
  AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = b.user_id)
"""
SQL_PURGE_EXPORTS_PREVIEW = f"""
SELECT count(*) FROM exports e
WHERE {_TERMINAL_AFTER_EXPIRY}
  AND (expires_at IS NULL OR expires_at <= now())
  AND coalesce(completed_at, created_at) < now() - make_interval(days => $1)
  AND NOT {_IN_COOLDOWN}
  AND NOT {_FOLLOWED_NEXT}
"""


def old_files(root: Path, now: float) -> tuple[list[Path], list[Path]]:
    """(temp files, ZIPs) the service wrote under the user folders, older than an hour.

    Only names the service gives its own files: anything else is never touched.
    """
    parts: list[Path] = []
    zips: list[Path] = []
    if not root.is_dir():
        return parts, zips
    for user_dir in root.iterdir():
        if not user_dir.is_dir() or user_dir.is_symlink():
            continue
        try:
            entries = list(user_dir.iterdir())
        except FileNotFoundError:
            continue  # removed meanwhile (emptied and removed by another cleanup)
        for entry in entries:
            own_temp = OWN_TEMP_RE.fullmatch(entry.name) is not None
            if not own_temp and OWN_ZIP_RE.fullmatch(entry.name) is None:
                continue
            try:
                age = now - entry.lstat().st_mtime
            except FileNotFoundError:
                continue  # renamed or removed by a build meanwhile
            if age <= TEMP_MAX_AGE_SECONDS or entry.is_symlink():
                continue  # young: possibly being written or just published
            (parts if own_temp else zips).append(entry)
    return parts, zips


def old_export_files(root: Path, now: float) -> list[Path]:
    """Files under the exports' folders older than an hour: temp files of runs that died, and
    parts (kept only if a ready part row points at them: the caller checks)."""
    found: list[Path] = []
    exports = root / EXPORTS_FOLDER
    if not exports.is_dir() or exports.is_symlink():
        return found
    for folder in exports.iterdir():
        if not folder.is_dir() or folder.is_symlink():
            continue
        for entry in folder.iterdir():
            try:
                if now - entry.lstat().st_mtime > TEMP_MAX_AGE_SECONDS and entry.is_file():
                    found.append(entry)
            except FileNotFoundError:
                continue
    return found


def remove_empty_export_folders(root: Path) -> int:
    removed = 0
    exports = root / EXPORTS_FOLDER
    if exports.is_dir() and not exports.is_symlink():
        for folder in exports.iterdir():
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
                removed += 1
    return removed


def remove_files_and_empty_folders(root: Path, files: list[Path]) -> int:
    for path in files:
        path.unlink(missing_ok=True)
    folders = 0
    if root.is_dir():
        for user_dir in root.iterdir():
            if user_dir.is_dir() and not user_dir.is_symlink():
                try:
                    user_dir.rmdir()  # only succeeds when empty
                    folders += 1
                except OSError:
                    pass
    return folders


async def cleanup_expired_bdrs(ctx: dict[str, Any]) -> dict[str, int]:
    st = state(ctx)
    root = st.settings.bdr_path
    # A line per step: `python -m pmd_service cleanup` shows its progress on stderr.
    expired = await st.pool.fetch(SQL_EXPIRE_DUE)
    for row in expired:
        await st.zips.remove(row["file_path"])  # never a host's ZIP (imported at the cut-over)
    parts = await st.pool.fetch(SQL_EXPIRE_EXPORTS_DUE)
    for row in parts:
        await st.zips.remove(row["file_path"])
    log.info(
        "cleanup: %d downloads past their expiry expired, their ZIPs removed; %d parts of "
        "expired exports removed", len(expired), len(parts),
    )  # fmt: skip
    purged = int((await st.pool.execute(SQL_PURGE_TERMINAL, TERMINAL_RETENTION_DAYS)).split()[-1])
    events = int((await st.pool.execute(SQL_PURGE_EVENTS)).split()[-1])
    purged += int((await st.pool.execute(SQL_PURGE_USERS_GONE)).split()[-1])
    cooldown = float(st.settings.export_cooldown_seconds)
    purged += int(
        (await st.pool.execute(SQL_PURGE_EXPORTS, TERMINAL_RETENTION_DAYS, cooldown)).split()[-1]
    )
    await st.pool.execute(SQL_PURGE_MODERATOR_MARKS)
    await st.pool.execute(SQL_PURGE_AUDITED_READS)
    undo_purged = int((await st.pool.execute(SQL_PURGE_UNDO_HISTORY)).split()[-1])
    log.info(
        "cleanup: %d old finished requests, %d old events and %d posts' undo rows past their "
        "window purged", purged, events, undo_purged,
    )  # fmt: skip
    if st.zips.store is not None:
        assert st.zips.bucket is not None
        log.info("cleanup: tidying s3://%s/%s", st.zips.bucket.bucket, st.zips.bucket.prefix)
        summary = await _tidy_bucket(st.pool, st.zips.store, st.zips.bucket, st.settings.s3_access)
    else:
        log.info("cleanup: tidying the folder %s", root)
        summary = await _tidy_folder(st.pool, root)
    summary = {
        "expired": len(expired),
        "export_parts_expired": len(parts),
        "purged": purged,
        "events_purged": events,
        **summary,
    }
    log.info("cleanup: %s", summary)
    return summary


async def _tidy_bucket(
    pool: asyncpg.Pool, store: S3Store, bucket: StoreUrl, access: S3Access
) -> dict[str, int]:
    return {
        "uploads_aborted": await abort_dead_uploads(pool, bucket, access, TEMP_MAX_AGE_SECONDS),
        "orphan_zips_removed": await remove_orphan_objects(pool, store, TEMP_MAX_AGE_SECONDS),
    }


async def _tidy_folder(pool: asyncpg.Pool, root: Path) -> dict[str, int]:
    parts, zips = await asyncio.to_thread(old_files, root, time.time())
    stored = {f"{BDR_PREFIX}{z.parent.name}/{z.name}": z for z in zips}
    kept = {r["file_path"] for r in await pool.fetch(SQL_READY_FILES, list(stored))}
    orphans = [path for name, path in stored.items() if name not in kept]
    folders = await asyncio.to_thread(remove_files_and_empty_folders, root, parts + orphans)
    # An export's folder: its temp files of runs that died, and parts no ready row points at.
    export_files = await asyncio.to_thread(old_export_files, root, time.time())
    named = {f"{BDR_PREFIX}{EXPORTS_FOLDER}/{f.parent.name}/{f.name}": f for f in export_files}
    kept_parts = {r["file_path"] for r in await pool.fetch(SQL_READY_PARTS, list(named))}
    stale = [path for name, path in named.items() if name not in kept_parts]
    await asyncio.to_thread(remove_files_and_empty_folders, root, stale)
    folders += await asyncio.to_thread(remove_empty_export_folders, root)
    return {"temp_files_removed": len(parts), "orphan_zips_removed": len(orphans) + len(stale),
            "folders_removed": folders}  # fmt: skip


async def cleanup_dry_run(ctx: dict[str, Any]) -> dict[str, int | bool]:
    """What `cleanup_expired_bdrs` would do now, in the same summary (plus `dry_run`), changing
    nothing: the database is read in a read-only transaction, the folder or bucket only listed."""
    st = state(ctx)
    days = TERMINAL_RETENTION_DAYS
    async with st.pool.acquire() as conn, conn.transaction(readonly=True):
        expired = await conn.fetch(SQL_EXPIRE_DUE_PREVIEW)
        parts = await conn.fetch(SQL_EXPIRE_EXPORTS_DUE_PREVIEW)
        log.info(
            "cleanup (dry run): %d downloads past their expiry would be expired, their ZIPs "
            "removed; %d parts of expired exports removed", len(expired), len(parts),
        )  # fmt: skip
        purged = int(await conn.fetchval(SQL_PURGE_TERMINAL_PREVIEW, days))
        purged += int(await conn.fetchval(SQL_PURGE_USERS_GONE_PREVIEW, days))
        cooldown = float(st.settings.export_cooldown_seconds)
        purged += int(await conn.fetchval(SQL_PURGE_EXPORTS_PREVIEW, days, cooldown))
        events = int(await conn.fetchval(SQL_PURGE_EVENTS_PREVIEW))
        log.info("cleanup (dry run): %d old finished requests and %d old events would be purged",
                 purged, events)  # fmt: skip
        if st.zips.store is not None:
            assert st.zips.bucket is not None
            log.info("cleanup (dry run): listing s3://%s/%s", st.zips.bucket.bucket,
                     st.zips.bucket.prefix)  # fmt: skip
            tidy = await _tidy_bucket_preview(conn, st.zips.store, st.zips.bucket,
                                              st.settings.s3_access)  # fmt: skip
        else:
            root = st.settings.bdr_path
            log.info("cleanup (dry run): listing the folder %s", root)
            due = [r["file_path"] for r in [*expired, *parts]]
            tidy = await _tidy_folder_preview(conn, root, due)
    return {
        "dry_run": True,
        "expired": len(expired),
        "export_parts_expired": len(parts),
        "purged": purged,
        "events_purged": events,
        **tidy,
    }


async def _tidy_folder_preview(conn: Conn, root: Path, due: list[str | None]) -> dict[str, int]:
    """`_tidy_folder`'s counts, and the folders it would find empty once the files of the
    expired rows (`due`) and its own are gone."""
    temps, zips = await asyncio.to_thread(old_files, root, time.time())
    stored = {f"{BDR_PREFIX}{z.parent.name}/{z.name}": z for z in zips}
    kept = {r["file_path"] for r in await conn.fetch(SQL_READY_FILES, list(stored))}
    orphans = [path for name, path in stored.items() if name not in kept]
    export_files = await asyncio.to_thread(old_export_files, root, time.time())
    named = {f"{BDR_PREFIX}{EXPORTS_FOLDER}/{f.parent.name}/{f.name}": f for f in export_files}
    kept_parts = {r["file_path"] for r in await conn.fetch(SQL_READY_PARTS, list(named))}
    stale = [path for name, path in named.items() if name not in kept_parts]
    gone = {*temps, *orphans, *stale}
    for file_path in due:
        if file_path and not is_host_file(file_path):
            with contextlib.suppress(VaultPathError):
                gone.add(bdr_zip_path(root, file_path))
    folders = await asyncio.to_thread(_folders_left_empty, root, gone)
    return {"temp_files_removed": len(temps), "orphan_zips_removed": len(orphans) + len(stale),
            "folders_removed": folders}  # fmt: skip


def _folders_left_empty(root: Path, gone: set[Path]) -> int:
    """The user folders and export folders that would hold nothing once `gone` is removed (what
    `remove_files_and_empty_folders` and `remove_empty_export_folders` count)."""

    def emptied(folder: Path) -> bool:
        try:
            return all(entry in gone for entry in folder.iterdir())
        except OSError:
            return False

    if not root.is_dir():
        return 0
    count = sum(1 for d in root.iterdir() if d.is_dir() and not d.is_symlink() and emptied(d))
    exports = root / EXPORTS_FOLDER
    if exports.is_dir() and not exports.is_symlink():
        count += sum(
            1 for d in exports.iterdir() if d.is_dir() and not d.is_symlink() and emptied(d)
        )
    return count


async def _tidy_bucket_preview(
    conn: Conn, store: S3Store, bucket: StoreUrl, access: S3Access
) -> dict[str, int]:
    """`_tidy_bucket`'s counts from listings alone (object_tidy's rules: the same names, ages
    and rows)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=TEMP_MAX_AGE_SECONDS)
    uploads = await incomplete_uploads(bucket, access)
    owned = {u.upload_id: own_object(u.key) for u in uploads}
    ids: list[uuid.UUID] = list({o[0] for o in owned.values() if o is not None})
    live = {(r["id"], r["run"]) for r in await conn.fetch(SQL_LIVE_RUNS, ids)} if ids else set()
    dead = sum(
        1
        for u in uploads
        if ((own := owned[u.upload_id]) is None and u.initiated < cutoff)
        or (own is not None and own not in live)
    )
    candidates: set[str] = set()
    async for batch in obstore.list(store, chunk_size=1000):
        for meta in batch:
            if own_object(meta["path"]) is not None and meta["last_modified"] < cutoff:
                candidates.add(f"{BDR_PREFIX}{meta['path']}")
    kept = {r["file_path"] for r in await conn.fetch(SQL_READY_OBJECTS, list(candidates))}
    return {"uploads_aborted": dead, "orphan_zips_removed": len(candidates - kept)}
