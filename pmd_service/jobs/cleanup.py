"""Daily: expire old downloads, purge old rows and events, tidy the BDR folder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import aiofiles.os

from ..vault import VaultPathError, bdr_zip_path
from .context import state

log = logging.getLogger(__name__)

TERMINAL_RETENTION_DAYS = 14
TEMP_MAX_AGE_SECONDS = 3600

SQL_EXPIRE_DUE = """
UPDATE batch_download_requests SET status = 'expired'
WHERE status = 'ready' AND expires_at <= now()
RETURNING id, file_path
"""
SQL_PURGE_TERMINAL = f"""
DELETE FROM batch_download_requests
WHERE status IN ('failed', 'expired', 'cancelled')
  AND coalesce(completed_at, created_at) < now() - interval '{TERMINAL_RETENTION_DAYS} days'
"""
SQL_PURGE_EVENTS = "DELETE FROM bdr_events WHERE created_at < now() - interval '1 day'"


def tidy_folder(root: Path, now: float) -> tuple[int, int]:
    """Remove stale `.part` files (a crashed build) and empty user folders."""
    temps = folders = 0
    if not root.is_dir():
        return 0, 0
    for user_dir in root.iterdir():
        if not user_dir.is_dir() or user_dir.is_symlink():
            continue
        for entry in user_dir.iterdir():
            if entry.name.endswith(".part") and now - entry.stat().st_mtime > TEMP_MAX_AGE_SECONDS:
                entry.unlink(missing_ok=True)
                temps += 1
        try:
            user_dir.rmdir()  # only succeeds when empty
            folders += 1
        except OSError:
            pass
    return temps, folders


async def cleanup_expired_bdrs(ctx: dict[str, Any]) -> dict[str, int]:
    st = state(ctx)
    root = st.settings.bdr_path
    expired = await st.pool.fetch(SQL_EXPIRE_DUE)
    for row in expired:
        try:
            path = bdr_zip_path(root, row["file_path"] or "")
        except VaultPathError:
            continue
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(path)
    purged = int((await st.pool.execute(SQL_PURGE_TERMINAL)).split()[-1])
    events = int((await st.pool.execute(SQL_PURGE_EVENTS)).split()[-1])
    temps, folders = await asyncio.to_thread(tidy_folder, root, time.time())
    summary = {"expired": len(expired), "purged": purged, "events_purged": events,
               "temp_files_removed": temps, "folders_removed": folders}  # fmt: skip
    log.info("cleanup: %s", summary)
    return summary
