"""Which artworks go into which part of an export: planned once, newest first, by size."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from ...core.named_sql import Named
from ...core.visibility import visible_comment
from ...host.vault import VaultFiles, VaultPathError, relative_layers_path, relative_upscaled_path
from ...jobs.context import WorkerState
from .incremental import CARRIES_FILES, CHANGED

# ZIP headers, the manifest's line and metadata.json's entry: measured ~900 bytes, rounded up.
PER_ARTWORK = 1536
PER_WORKING_FILE = 1024  # the same for a layers file or an upscaled copy beside it
# An artwork's .hex and .gpl of 256 colours, compressed and listed: measured ~4.3 KB, rounded up.
PER_PALETTE = 5 * 1024
PER_COMMENT = 320  # its JSON around the body (ids, author, dates, indentation)
PER_REACTION_KIND = 64
# The tag files, the JSON files' heads and the ZIP's end, whatever the artworks.
PER_PART = 64 * 1024
# A part's artworks at most: its JSON files and gallery are made whole, so the worker's memory
# grows with a part's artworks, and the byte bound alone lets small ones pile up.
POSTS_A_PART = 4000

SQL_EXPORT_POSTS = Named(f"""
SELECT p.id, p.storage_shard, p.storage_key, pf.format,
       coalesce(pf.file_bytes, 0)::bigint AS file_bytes, p.mkpx_file_bytes::bigint AS layers_bytes,
       (octet_length(p.title) + coalesce(octet_length(p.description), 0)
        + coalesce(octet_length(array_to_string(p.hashtags, ' ')), 0))::bigint AS text_bytes,
       coalesce(c.bytes, 0)::bigint AS comment_bytes, coalesce(r.kinds, 0)::bigint AS kinds,
       {CARRIES_FILES} AS carries
FROM posts p
LEFT JOIN post_files pf ON pf.post_id = p.id AND pf.is_native
LEFT JOIN LATERAL (
    SELECT sum(2 * octet_length(c.body) + {PER_COMMENT}) AS bytes
    FROM comments c WHERE c.post_id = p.id AND {visible_comment("c")}
) AS c ON :comments
LEFT JOIN LATERAL (
    SELECT count(DISTINCT emoji) AS kinds FROM reactions x WHERE x.post_id = p.id
) AS r ON :reactions
WHERE p.owner_id = :owner AND p.kind = 'artwork' AND NOT p.deleted_by_user
  AND {CHANGED}
ORDER BY p.created_at DESC, p.id DESC
""")


@dataclass(frozen=True)
class PlannedPart:
    post_ids: list[int]
    estimated_bytes: int


def _stat(files: VaultFiles, relative: str) -> int | None:
    try:
        return os.stat(files.file(relative)).st_size
    except (VaultPathError, OSError):
        return None  # skipped at build time, with its reason


def _file_sizes(vault: Path, rows: list[asyncpg.Record], upscaled: bool) -> dict[int, int]:
    """The vault's sizes of each artwork's files (missing ones as the host declared)."""
    files = VaultFiles(vault.resolve())
    sizes: dict[int, int] = {}
    for row in rows:
        if row["format"] is None or not row["carries"]:
            continue
        shard, key = row["storage_shard"], row["storage_key"]
        try:
            size = os.stat(files.artwork(shard, key, row["format"])).st_size
        except (VaultPathError, OSError):
            continue  # skipped at build time, with its reason
        if row["layers_bytes"] is not None:
            size += _stat(files, relative_layers_path(shard, key)) or row["layers_bytes"]
        if upscaled:
            size += _stat(files, relative_upscaled_path(shard, key)) or 0
        sizes[row["id"]] = size
    return sizes


def split(sizes: list[tuple[int, int]], part_bytes: int) -> list[PlannedPart]:
    """(post id, bytes) → parts within `part_bytes` and POSTS_A_PART, a larger artwork alone."""
    budget = max(part_bytes - PER_PART, 1)
    parts: list[PlannedPart] = []
    current: list[int] = []
    size = 0
    for post_id, estimate in sizes:
        if current and (size + estimate > budget or len(current) == POSTS_A_PART):
            parts.append(PlannedPart(current, size + PER_PART))
            current, size = [], 0
        current.append(post_id)
        size += estimate
    if current:
        parts.append(PlannedPart(current, size + PER_PART))
    return parts


async def plan_parts(st: WorkerState, claim: asyncpg.Record, *, bag: bool) -> list[PlannedPart]:
    """The claimed export's parts, the files statted where the artworks are the vault's."""
    # An archive (not a `bag`) leaves others' comments and reactions, and the site's copies.
    upscaled = claim["include_upscaled"] and bag
    asked = {
        "owner": claim["user_id"],
        "comments": claim["include_comments"] and bag,
        "reactions": claim["include_reactions"] and bag,
        "since": claim["follows_started_at"],
        "base": claim["base_post_ids"],
    }
    rows = await st.pool.fetch(*SQL_EXPORT_POSTS.bind(asked))
    actual = {}  # declared sizes, unless the vault holds the files
    if st.artwork_store is None and not st.settings.artwork_base_url:
        actual = await asyncio.to_thread(_file_sizes, st.settings.vault_path, rows, upscaled)
    sizes = [(row["id"], _estimate(row, actual, upscaled)) for row in rows]
    return split(sizes, claim["part_bytes"])


def _estimate(row: asyncpg.Record, actual: dict[int, int], upscaled: bool) -> int:
    """A post's bytes in its part: its entry, texts and social, and its files when it carries them."""
    size: int = PER_ARTWORK + 2 * row["text_bytes"] + row["comment_bytes"]
    size += PER_REACTION_KIND * row["kinds"]
    if not row["carries"]:
        return size
    files: int = actual.get(row["id"], row["file_bytes"] + (row["layers_bytes"] or 0))
    beside = PER_WORKING_FILE * ((row["layers_bytes"] is not None) + upscaled)
    return size + files + beside + PER_PALETTE
