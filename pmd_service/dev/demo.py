"""Demo data for `make run`: a user with ~40 real pixel-art files, comments, reactions, a playlist.

Loaded only into an empty database (no users), so it never touches real data.
"""

from __future__ import annotations

import io
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from ..core.public_ids import PublicIds
from ..host.vault import artwork_path, host_shard
from .demo_user import DEMO_HANDLE

_FORMATS = ["png", "png", "png", "gif", "webp", "bmp"]
_EMOJI = ["👍", "❤️", "🔥", "✨", "😂"]
_TITLES = [
    "Sunset over pixels", "Tiny knight", "Slime friend", "Café at night", "Cat nap",
    "Mushroom forest", "Retro rocket", "Dungeon door", "Ocean waves", "Little dragon",
]  # fmt: skip


def pixel_art(rng: random.Random, size: int, scale: int, fmt: str, frames: int = 1) -> bytes:
    """A symmetric sprite on a 4-colour palette, scaled up with hard pixel edges."""
    from PIL import Image

    palette = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(4)]
    images = []
    for _ in range(frames):
        img = Image.new("RGB", (size, size), palette[0])
        for y in range(size):
            for x in range((size + 1) // 2):
                colour = palette[rng.randrange(4)]
                img.putpixel((x, y), colour)
                img.putpixel((size - 1 - x, y), colour)
        images.append(img.resize((size * scale, size * scale), Image.Resampling.NEAREST))
    out = io.BytesIO()
    if fmt == "gif" and frames > 1:
        images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=200, loop=0)
    else:
        images[0].save(out, fmt.upper() if fmt != "webp" else "WEBP", **(
            {"lossless": True} if fmt == "webp" else {}
        ))  # fmt: skip
    return out.getvalue()


async def _insert_user(
    conn: asyncpg.Connection, ids: PublicIds, handle: str, roles: list[str]
) -> tuple[int, str]:
    user_id: int = await conn.fetchval(
        "INSERT INTO users (handle, email, roles) VALUES ($1, $2, $3) RETURNING id",
        handle,
        f"{handle}@example.com",
        roles,
    )
    sqid = ids.encode(user_id)
    await conn.execute("UPDATE users SET public_sqid = $2 WHERE id = $1", user_id, sqid)
    return user_id, sqid


async def load_demo(
    conn: asyncpg.Connection, vault: Path, ids: PublicIds, count: int = 40
) -> str | None:
    """Seed an empty database; returns the demo user's sqid, or None if data already exists."""
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
        return None
    rng = random.Random(20261120)
    async with conn.transaction():
        licenses = [
            await conn.fetchval(
                "INSERT INTO licenses (identifier, title) VALUES ($1, $2) RETURNING id",
                ident,
                title,
            )
            for ident, title in [
                ("CC-BY-4.0", "Creative Commons Attribution 4.0"),
                ("CC-BY-NC-4.0", "Creative Commons Attribution-NonCommercial 4.0"),
                ("CC0-1.0", "Public domain dedication"),
            ]
        ]
        owner_id, owner_sqid = await _insert_user(conn, ids, DEMO_HANDLE, ["user"])
        fans = [await _insert_user(conn, ids, f"fan{i}", ["user"]) for i in range(1, 4)]
        await _insert_user(conn, ids, "mod", ["user", "moderator"])
        now = datetime.now(UTC)
        for n in range(count):
            fmt = _FORMATS[n % len(_FORMATS)]
            # A few large canvases so ZIPs of the demo take visible time.
            size, scale = (16, 4) if n % 7 else (64, 16)
            frames = 3 if fmt == "gif" else 1
            data = pixel_art(rng, size, scale, fmt, frames)
            key = uuid.uuid4()
            shard = host_shard(key, legacy=n % 3 == 0)  # both of the host's layouts
            path = artwork_path(vault, shard, key, fmt)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            created = now - timedelta(hours=n * 7 + rng.randrange(5))
            post_id: int = await conn.fetchval(
                """INSERT INTO posts (storage_key, storage_shard, owner_id, title, description,
                       hashtags, width, height, frame_count, view_count, license_id, created_at,
                       hidden_by_user)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11, $12) RETURNING id""",
                key, shard, owner_id, f"{_TITLES[n % len(_TITLES)]} #{n + 1}",
                "Made for the demo ✨" if n % 3 else None, ["pixelart", fmt],
                size * scale, frames, rng.randrange(2000), licenses[n % 3] if n % 4 else None,
                created, n % 9 == 4,
            )  # fmt: skip
            await conn.execute(
                "UPDATE posts SET public_sqid = $2, art_url = $3 WHERE id = $1",
                post_id,
                ids.encode(post_id),
                f"/vault/{shard}/{key}.{fmt}",
            )
            await conn.execute(
                "INSERT INTO post_files (post_id, format, file_bytes, is_native) VALUES ($1, $2, $3, true)",
                post_id,
                fmt,
                len(data),
            )
            parent = None
            for c in range(rng.randrange(4)):
                author = fans[rng.randrange(len(fans))][0] if c != 2 else None
                parent = await conn.fetchval(
                    """INSERT INTO comments (post_id, author_id, parent_id, body, created_at)
                       VALUES ($1, $2, $3, $4, $5) RETURNING id""",
                    post_id, author, parent if c == 1 else None,
                    ["Love this!", "Great palette 🎨", "How long did it take?"][c % 3],
                    created + timedelta(minutes=10 * (c + 1)),
                )  # fmt: skip
            for _ in range(rng.randrange(6)):
                await conn.execute(
                    "INSERT INTO reactions (post_id, user_id, emoji) VALUES ($1, $2, $3)",
                    post_id,
                    fans[rng.randrange(len(fans))][0],
                    _EMOJI[rng.randrange(len(_EMOJI))],
                )
        # Playlists are not managed by PMD yet; one exists to show it is left out.
        playlist_id = await conn.fetchval(
            "INSERT INTO posts (owner_id, title, kind) VALUES ($1, 'Favourites', 'playlist') RETURNING id",
            owner_id,
        )
        await conn.execute(
            "UPDATE posts SET public_sqid = $2 WHERE id = $1", playlist_id, ids.encode(playlist_id)
        )
    return owner_sqid
