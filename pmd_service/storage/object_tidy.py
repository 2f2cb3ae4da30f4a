"""Tidying the ZIPs' bucket: uploads left behind, and ZIPs no ready row points at; only keys
that carry the service's own names (`{user}/pmd-{id}.{run}.zip`) are ever touched."""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import obstore
from obstore.store import ObjectStore

from ..core.objects import S3Access, StoreUrl, Upload, abort_uploads, incomplete_uploads
from .zip_files import OBJECT_MISSING
from .zip_names import EXPORT_OBJECT_RE, OWN_OBJECT_RE, ZIP_PREFIX

if TYPE_CHECKING:
    from ..core.db import Conn

log = logging.getLogger(__name__)

# An upload under the prefix whose name is not the service's: aborted only once this old.
UPLOAD_MAX_AGE_SECONDS = 3600

# The run each BDR is being built by right now (the first 8 hex digits of its claim token).
SQL_LIVE_RUNS = """
SELECT id, left(replace(claim_token::text, '-', ''), 8) AS run
FROM batch_download_requests
WHERE id = ANY($1::uuid[]) AND status = 'processing' AND claim_token IS NOT NULL
UNION ALL
SELECT id, left(replace(claim_token::text, '-', ''), 8) AS run
FROM exports
WHERE id = ANY($1::uuid[]) AND status = 'processing' AND claim_token IS NOT NULL
"""
# An export's part is kept while its part row points at it, as a BDR's ZIP while its row does.
SQL_READY_FILES = """
SELECT file_path FROM batch_download_requests
WHERE status = 'ready' AND file_path = ANY($1::text[])
UNION ALL
SELECT file_path FROM export_parts
WHERE status = 'ready' AND file_path = ANY($1::text[])
"""


def _own(key: str) -> tuple[uuid.UUID, str] | None:
    """(BDR or export id, run) of a key the service names, None for any other key."""
    match = EXPORT_OBJECT_RE.fullmatch(key)
    if match is None and key.count("/") == 1:  # a BDR's key: `{user}/{name}`
        match = OWN_OBJECT_RE.fullmatch(key.rpartition("/")[2])
    return None if match is None else (uuid.UUID(match["id"]), match["run"])


async def dead_uploads(conn: Conn | asyncpg.Pool, url: StoreUrl, access: S3Access) -> list[Upload]:
    """The uploads of runs that are over, and of another name once UPLOAD_MAX_AGE_SECONDS old."""
    uploads = await incomplete_uploads(url, access)
    owned = {u.upload_id: _own(u.key) for u in uploads}
    ids = list({o[0] for o in owned.values() if o is not None})
    live = {(r["id"], r["run"]) for r in await conn.fetch(SQL_LIVE_RUNS, ids)} if ids else set()
    cutoff = datetime.now(UTC) - timedelta(seconds=UPLOAD_MAX_AGE_SECONDS)
    return [
        u
        for u in uploads
        if ((own := owned[u.upload_id]) is None and u.initiated < cutoff)
        or (own is not None and own not in live)
    ]


async def abort_dead_uploads(pool: asyncpg.Pool, url: StoreUrl, access: S3Access) -> int:
    dead = await dead_uploads(pool, url, access)
    if dead:
        await abort_uploads(url, access, dead)
        log.info("aborted %d multipart uploads left behind", len(dead))
    return len(dead)


async def own_objects(store: ObjectStore, min_age_seconds: float | None) -> set[str]:
    """The service's ZIPs and export parts older than `min_age_seconds` (None: any)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=min_age_seconds or 0)
    found: set[str] = set()
    async for batch in obstore.list(store, chunk_size=1000):
        for meta in batch:
            young = min_age_seconds is not None and meta["last_modified"] >= cutoff
            if _own(meta["path"]) is not None and not young:
                found.add(f"{ZIP_PREFIX}{meta['path']}")
    return found


async def unnamed_paths(conn: Conn | asyncpg.Pool, candidates: set[str]) -> frozenset[str]:
    """Those of `candidates` (stored file paths) no ready row points at."""
    if not candidates:
        return frozenset()
    kept = {r["file_path"] for r in await conn.fetch(SQL_READY_FILES, list(candidates))}
    return frozenset(candidates - kept)


async def remove_objects(
    pool: asyncpg.Pool, store: ObjectStore, orphans: frozenset[str]
) -> frozenset[str]:
    """Delete the `orphans` that a ready row still does not point at; returns those deleted."""
    gone = await unnamed_paths(pool, set(orphans))
    for path in gone:
        with contextlib.suppress(*OBJECT_MISSING):
            await obstore.delete_async(store, path.removeprefix(ZIP_PREFIX))
    return gone


async def remove_orphan_objects(
    pool: asyncpg.Pool, store: ObjectStore, min_age_seconds: float
) -> int:
    orphans = await unnamed_paths(pool, await own_objects(store, min_age_seconds))
    return len(await remove_objects(pool, store, orphans))
