"""Users and artworks for the benchmarks that need a few real files in the vault (the bigger
seeds, bench.posts and bench.sse, insert in bulk with SQL of their own)."""

from __future__ import annotations

import uuid
from typing import Any

from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from pmd_service.host.vault import artwork_path


async def add_user(conn: Any, ids: PublicIds, handle: str) -> tuple[int, str]:
    """A user with its public sqid set (as the host sets it); (id, sqid)."""
    owner: int = await conn.fetchval(
        "INSERT INTO users (handle, email) VALUES ($1::text, $1::text || '@bench') RETURNING id",
        handle,
    )
    sqid = ids.encode(owner)
    await conn.execute("UPDATE users SET public_sqid = $2 WHERE id = $1", owner, sqid)
    return owner, sqid


async def add_artwork(
    conn: Any, settings: Settings, ids: PublicIds, owner: int, title: str, data: bytes,
    shard: str | None = None,
) -> int:  # fmt: skip
    """A PNG artwork of `owner` whose file holds `data`, in the vault as the host lays it out
    (under `shard`, by default the first two hex digits of its storage key)."""
    key = uuid.uuid4()
    shard = shard if shard is not None else key.hex[:2]
    post_id: int = await conn.fetchval(
        "INSERT INTO posts (storage_key, storage_shard, owner_id, title) VALUES ($1, $2, $3, $4) RETURNING id",
        key, shard, owner, title,
    )  # fmt: skip
    await conn.execute(
        "UPDATE posts SET public_sqid = $2 WHERE id = $1", post_id, ids.encode(post_id)
    )
    path = artwork_path(settings.vault_path, shard, key, "png")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    await conn.execute(
        "INSERT INTO post_files (post_id, format, file_bytes, is_native) VALUES ($1, 'png', $2, true)",
        post_id, len(data),
    )  # fmt: skip
    return post_id
