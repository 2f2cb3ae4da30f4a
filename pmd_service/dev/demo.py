"""Demo data for `make run`: a user with 40 pixel-art posts showing every feature, fans, a
moderator; `demo --posts N` adds N more. Loaded only into an empty database, and more posts go
only to the demo user the loader made (marked by its `user_key`), never to a real account."""

from __future__ import annotations

import asyncio
import io
import json
import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from ..core.command import CliError
from ..core.db import SET_NO_IDLE_BOUND
from ..core.public_ids import PublicIds
from ..core.settings import Settings
from ..features.posts.live import announce_new
from ..host.vault import (
    host_shard,
    relative_artwork_path,
    relative_layers_path,
    relative_upscaled_path,
    vault_file_in,
)
from ..mail.language import words
from .demo_user import DEMO_HANDLE, demo_user_key, language_shown

DEMO_POSTS = 40
# More posts at once than this would take minutes and fill the disk with files of no use.
MAX_MORE_POSTS = 200_000
_FORMATS = ["png", "png", "png", "gif", "webp", "bmp"]
_EMOJI = ["👍", "❤️", "🔥", "✨", "😂"]
_TITLES = [
    "Sunset over pixels",
    "Tiny knight",
    "Slime friend",
    "Café at night",
    "Cat nap",
    "Mushroom forest",
    "Retro rocket",
    "Dungeon door",
    "Ocean waves",
    "Little dragon",
]
_COMMENTS = ["Love this!", "Great palette 🎨", "How long did it take?"]
# The fourth is NoDerivatives: the host keeps its posts' remix permission off.
LICENSES = [
    ("CC-BY-4.0", "Creative Commons Attribution 4.0"),
    ("CC-BY-NC-4.0", "Creative Commons Attribution-NonCommercial 4.0"),
    ("CC0-1.0", "Public domain dedication"),
    ("CC-BY-ND-4.0", "Creative Commons Attribution-NoDerivatives 4.0"),
]
ND_LICENSE = "CC-BY-ND-4.0"
FANS = ("fan1", "fan2", "fan3")
MODERATOR_HANDLE = "mod"
MOD_TAG = "staffpick"
# The host's 8-byte signature of a `.mkpx` layers file (api/app/vault.py, MKPX_MAGIC_PLAIN).
MKPX_MAGIC = b"\x89MKPX\r\n\x1a"
# Of the demo's own 40: hidden by a moderator, and deleted by the artist this many days ago.
MOD_HIDDEN = frozenset({10})
DELETED_DAYS_AGO = {6: 1, 13: 3, 27: 5}
# Mentions as the host stores them (`<@SQID>`); `gone` is an account deleted since.
GONE_HANDLE = "gone"
DESCRIPTIONS = {
    0: "Drawn live with {fan1} and {fan2} at the pixel jam ✨",
    1: "The palette is {gone}'s, from before they left",
    3: "Picked by {mod} for the front page, thank you!",
    5: "For {fan3}, who asked for mushrooms",
}
MENTIONING_COMMENTS = [  # (post number, author, body)
    (0, "fan2", "{fan1} your outlines are so clean here"),
    (1, "fan1", "{gone} would have loved this"),
    (3, "fan3", "Well deserved! Good eye, {mod}"),
]
# Every user the demo makes (`gone` is deleted as soon as it is made), each with the demo's mark.
DEMO_HANDLES = (DEMO_HANDLE, *FANS, MODERATOR_HANDLE, GONE_HANDLE)
SQL_OTHER_USERS = """
SELECT EXISTS (
    SELECT 1 FROM users
    WHERE (handle, user_key) NOT IN (SELECT * FROM unnest($1::text[], $2::uuid[]))
)
"""


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
    return _encode(images, fmt)


def _encode(images: list[Any], fmt: str) -> bytes:
    out = io.BytesIO()
    first, *more = images
    if fmt == "gif" and more:
        first.save(out, "GIF", save_all=True, append_images=more, duration=200, loop=0)
    elif fmt == "webp":
        first.save(out, "WEBP", lossless=True)
    else:
        first.save(out, fmt.upper())
    return out.getvalue()


def upscaled_copy(data: bytes, factor: int = 4) -> bytes:
    """The host's upscaled copy of an artwork: its first frame, `factor` times larger, WebP."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        big = img.convert("RGB").resize(
            (img.width * factor, img.height * factor), Image.Resampling.NEAREST
        )
    return _encode([big], "webp")


def layers_file(title: str) -> bytes:
    """A small `.mkpx` file: the host's signature, then a description of its layers."""
    body = {"title": title, "layers": ["background", "sprite", "outline"]}
    return MKPX_MAGIC + json.dumps(body).encode()


@dataclass(frozen=True)
class Art:
    """An artwork's files: the image, its upscaled copy, and its size."""

    fmt: str
    data: bytes
    side: int
    frames: int
    upscaled: bytes


def draw(rng: random.Random, n: int, *, tiny: bool = False) -> Art:
    """The `n`th artwork's image: a few large canvases (ZIPs take visible time), or a tiny one."""
    fmt = _FORMATS[n % len(_FORMATS)]
    size, scale = (8, 2) if tiny else (16, 4) if n % 7 else (64, 16)
    frames = 3 if fmt == "gif" else 1
    data = pixel_art(rng, size, scale, fmt, frames)
    return Art(fmt, data, size * scale, frames, upscaled_copy(data))


@dataclass(frozen=True)
class Seeded:
    """What the demo's seeding code needs of the database around the posts."""

    owner_id: int
    license_ids: list[int]  # in LICENSES' order
    fan_ids: list[int]


async def _insert_user(
    conn: asyncpg.Connection, ids: PublicIds, handle: str, roles: list[str]
) -> tuple[int, str]:
    user_id: int = await conn.fetchval(
        "INSERT INTO users (handle, email, roles, user_key) VALUES ($1, $2, $3, $4) RETURNING id",
        handle,
        f"{handle}@example.com",
        roles,
        demo_user_key(handle),  # the demo's mark: `demo --posts` writes only to such a user
    )
    sqid = ids.encode(user_id)
    await conn.execute("UPDATE users SET public_sqid = $2 WHERE id = $1", user_id, sqid)
    return user_id, sqid


SQL_LICENSES = """
WITH wanted AS (SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(identifier, title, n)),
     added AS (INSERT INTO licenses (identifier, title) SELECT identifier, title FROM wanted
               ON CONFLICT (identifier) DO NOTHING RETURNING id, identifier)
SELECT coalesce(a.id, l.id) AS id FROM wanted w
LEFT JOIN added a USING (identifier) LEFT JOIN licenses l ON l.identifier = w.identifier
ORDER BY w.n
"""


async def _licenses(conn: asyncpg.Connection) -> list[int]:
    """The demo's licenses, added where missing."""
    rows = await conn.fetch(SQL_LICENSES, [i for i, _ in LICENSES], [t for _, t in LICENSES])
    return [r["id"] for r in rows]


# `listed_at` is set as the host's ORM sets it, to the post's time; an older layout has none.
_INSERT_POSTS = """
INSERT INTO posts (storage_key, storage_shard, owner_id, title, description, hashtags,
                   mod_hashtags, art_url, width, height, frame_count, view_count, license_id,
                   remixable, created_at, hidden_by_user, hidden_by_mod, deleted_by_user,
                   deleted_by_user_date, mkpx_file_bytes, mkpx_attached_at{listed_at})
SELECT k.key, k.shard, $1, k.title, k.description,
       ARRAY['pixelart', k.fmt] || CASE WHEN k.mod_tag THEN ARRAY[$3] ELSE '{{}}' END,
       CASE WHEN k.mod_tag THEN ARRAY[$3] ELSE '{{}}' END::varchar[],
       '/vault/' || k.shard || '/' || k.key || '.' || k.fmt,
       k.side, k.side, k.frames, k.views, k.license_id, k.license_id IS DISTINCT FROM $4,
       k.created_at, k.hidden, k.mod_hidden, k.deleted_at IS NOT NULL, k.deleted_at,
       k.layers_bytes, CASE WHEN k.layers_bytes IS NOT NULL THEN k.created_at END{created_at}
FROM unnest($2::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[], $10::int[],
            $11::int[], $12::int[], $13::int[], $14::timestamptz[], $15::bool[], $16::bool[],
            $17::timestamptz[], $18::int[])
     WITH ORDINALITY AS k(key, shard, title, description, fmt, mod_tag, side, frames, views,
                          license_id, created_at, hidden, mod_hidden, deleted_at, layers_bytes, n)
ORDER BY k.n
RETURNING id, storage_key
"""
SQL_INSERT_POSTS = _INSERT_POSTS.format(listed_at=", listed_at", created_at=", k.created_at")
SQL_INSERT_POSTS_UNLISTED = _INSERT_POSTS.format(listed_at="", created_at="")
_HAS_COLUMN = """
SELECT EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = '{table}'::regclass AND attname = '{column}' AND NOT attisdropped)
"""
SQL_HAS_LISTED_AT = _HAS_COLUMN.format(table="posts", column="listed_at")

SQL_SET_SQIDS = """
UPDATE posts p SET public_sqid = s.sqid
FROM unnest($1::int[], $2::text[]) AS s(id, sqid) WHERE p.id = s.id
"""

SQL_INSERT_FILES = """
INSERT INTO post_files (post_id, format, file_bytes, is_native)
SELECT *, true FROM unnest($1::int[], $2::text[], $3::int[])
"""

SQL_INSERT_COMMENTS = """
INSERT INTO comments (id, post_id, author_id, parent_id, body, created_at)
SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $4::uuid[], $5::text[], $6::timestamptz[])
"""

SQL_INSERT_REACTIONS = """
INSERT INTO reactions (post_id, user_id, emoji)
SELECT * FROM unnest($1::int[], $2::int[], $3::text[])
"""


async def insert_posts(
    conn: asyncpg.Connection,
    vault: Path,
    ids: PublicIds,
    seeded: Seeded,
    first: int,
    arts: Sequence[Art],
    rng: random.Random,
    now: datetime,
) -> list[int]:
    """The demo user's artworks numbered from `first`, with files, comments and reactions; ids."""
    nd = seeded.license_ids[[i for i, _ in LICENSES].index(ND_LICENSE)]
    numbers = range(first, first + len(arts))
    keys = [uuid.uuid4() for _ in arts]
    shards = [host_shard(key, legacy=n % 3 == 0) for n, key in zip(numbers, keys, strict=True)]
    titles = [f"{_TITLES[n % len(_TITLES)]} #{n + 1}" for n in numbers]
    layers = [layers_file(t) if n % 4 == 1 else None for n, t in zip(numbers, titles, strict=True)]
    deleted = {n: now - timedelta(days=d, hours=2) for n, d in DELETED_DAYS_AGO.items()}
    listed = await conn.fetchval(SQL_HAS_LISTED_AT)
    rows = await conn.fetch(
        SQL_INSERT_POSTS if listed else SQL_INSERT_POSTS_UNLISTED,
        seeded.owner_id,
        keys,
        MOD_TAG,
        nd,
        shards,
        titles,
        ["Made for the demo ✨" if n % 3 else None for n in numbers],
        [a.fmt for a in arts],
        [n % 10 == 3 for n in numbers],
        [a.side for a in arts],
        [a.frames for a in arts],
        [rng.randrange(2000) for _ in arts],
        [seeded.license_ids[n % len(LICENSES)] if n % 5 else None for n in numbers],
        [now - timedelta(hours=n * 7 + rng.randrange(5)) for n in numbers],
        [n % 9 == 4 for n in numbers],
        [n in MOD_HIDDEN for n in numbers],
        [deleted.get(n) for n in numbers],
        [len(f) if f else None for f in layers],
    )
    by_key = {r["storage_key"]: r["id"] for r in rows}
    post_ids = [by_key[key] for key in keys]
    await conn.execute(SQL_SET_SQIDS, post_ids, [ids.encode(i) for i in post_ids])
    await conn.execute(
        SQL_INSERT_FILES, post_ids, [a.fmt for a in arts], [len(a.data) for a in arts]
    )
    files = list(zip(numbers, keys, shards, arts, layers, strict=True))
    await asyncio.to_thread(_write_files, vault, files)
    await _engagement(conn, seeded.fan_ids, post_ids, rng, now)
    return post_ids


def _write_files(vault: Path, files: list[tuple[int, uuid.UUID, str, Art, bytes | None]]) -> None:
    """Each post's image, its layers file when it has one, its upscaled copy every third post."""
    root = vault.resolve()
    for n, key, shard, art, layers in files:
        _write(vault_file_in(root, relative_artwork_path(shard, key, art.fmt)), art.data)
        if layers is not None:
            _write(vault_file_in(root, relative_layers_path(shard, key)), layers)
        if n % 3 == 2:
            _write(vault_file_in(root, relative_upscaled_path(shard, key)), art.upscaled)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def _engagement(
    conn: asyncpg.Connection,
    fans: list[int],
    post_ids: list[int],
    rng: random.Random,
    now: datetime,
) -> None:
    """Up to three comments a post (a reply, one by a deleted account) and five reactions."""
    comments: list[tuple[uuid.UUID, int, int | None, uuid.UUID | None, str, datetime]] = []
    reactions: list[tuple[int, int, str]] = []
    pairs = [(fan, emoji) for fan in fans for emoji in _EMOJI]
    for post_id in post_ids:
        parent: uuid.UUID | None = None
        for c in range(rng.randrange(4)):
            comment_id = uuid.uuid4()
            author = fans[rng.randrange(len(fans))] if c != 2 else None
            when = now - timedelta(minutes=rng.randrange(60 * 24 * 30))
            reply_to, body = parent if c == 1 else None, _COMMENTS[c % len(_COMMENTS)]
            comments.append((comment_id, post_id, author, reply_to, body, when))
            parent = comment_id
        reactions += [(post_id, fan, emoji) for fan, emoji in rng.sample(pairs, rng.randrange(6))]
    if comments:
        await conn.execute(SQL_INSERT_COMMENTS, *map(list, zip(*comments, strict=True)))
    if reactions:
        await conn.execute(SQL_INSERT_REACTIONS, *map(list, zip(*reactions, strict=True)))


SQL_SET_DESCRIPTIONS = """
UPDATE posts p SET description = d.text
FROM unnest($1::int[], $2::text[]) AS d(id, text) WHERE p.id = d.id
"""


async def _mentions(
    conn: asyncpg.Connection,
    post_ids: list[int],
    users: dict[str, tuple[int, str]],
    now: datetime,
) -> None:
    """The demo's mentions on its posts; `users` gives each handle's id and sqid."""
    marks = {handle: f"<@{sqid}>" for handle, (_, sqid) in users.items()}
    described = [
        (post_ids[n], text.format_map(marks))
        for n, text in DESCRIPTIONS.items()
        if n < len(post_ids)
    ]
    await conn.execute(SQL_SET_DESCRIPTIONS, *map(list, zip(*described, strict=True)))
    comments = [
        (uuid.uuid4(), post_ids[n], users[author][0], None, body.format_map(marks), now)
        for n, author, body in MENTIONING_COMMENTS
        if n < len(post_ids)
    ]
    await conn.execute(SQL_INSERT_COMMENTS, *map(list, zip(*comments, strict=True)))


async def load_demo(
    conn: asyncpg.Connection, vault: Path, ids: PublicIds, count: int = DEMO_POSTS
) -> str | None:
    """Seed an empty database; returns the demo user's sqid, or None if data already exists."""
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
        return None
    rng = random.Random(20261120)
    async with conn.transaction():
        await conn.execute(SET_NO_IDLE_BOUND)  # artworks are drawn and written in between
        license_ids = await _licenses(conn)
        roles = {MODERATOR_HANDLE: ["user", "moderator"]}
        users = {h: await _insert_user(conn, ids, h, roles.get(h, ["user"])) for h in DEMO_HANDLES}
        owner_id, owner_sqid = users[DEMO_HANDLE]
        # An account made and deleted: its sqid names no account, as a deleted user's does.
        await conn.execute("DELETE FROM users WHERE id = $1", users[GONE_HANDLE][0])
        arts = [draw(rng, n) for n in range(count)]
        seeded = Seeded(owner_id, license_ids, [users[f][0] for f in FANS])
        now = datetime.now(UTC)
        post_ids = await insert_posts(conn, vault, ids, seeded, 0, arts, rng, now)
        await _mentions(conn, post_ids, users, now)
        # Playlists are not managed by PMD yet; one exists to show it is left out.
        playlist_id = await conn.fetchval(
            "INSERT INTO posts (owner_id, title, kind) VALUES ($1, 'Favourites', 'playlist') RETURNING id",
            owner_id,
        )
        await conn.execute(SQL_SET_SQIDS, [playlist_id], [ids.encode(playlist_id)])
    return owner_sqid


async def holds_other_users(conn: asyncpg.Connection) -> bool:
    """Whether `users` holds an account the demo did not make (it carries no demo mark)."""
    if await conn.fetchval("SELECT to_regclass('users')") is None:
        return False  # a fresh database: the stand-in host tables are not there yet
    keys = [demo_user_key(handle) for handle in DEMO_HANDLES]
    return bool(await conn.fetchval(SQL_OTHER_USERS, list(DEMO_HANDLES), keys))


# A tag for `users.locale` (varchar(35)): BCP 47's shape, letters, digits and hyphens.
LOCALE_TAG = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
MAX_LOCALE = 35


def locale_tag(raw: str) -> str:
    """`raw` as the demo user's `users.locale`, or ValueError saying what a tag looks like."""
    if len(raw) > MAX_LOCALE or not LOCALE_TAG.fullmatch(raw):
        raise ValueError(
            f"must be a language tag such as es, pt-BR or zh-Hans (letters, digits and hyphens, "
            f"at most {MAX_LOCALE} characters), got {raw!r}"
        )
    return raw


SQL_HAS_LOCALE = _HAS_COLUMN.format(table="users", column="locale")
# Only the user the demo made ($2, its key): a real account named `demo` keeps its language.
SQL_SET_LOCALE = "UPDATE users SET locale = $3 WHERE handle = $1 AND user_key = $2"
SQL_LOCALE = "SELECT locale FROM users WHERE handle = $1 AND user_key = $2"


@dataclass(frozen=True)
class DemoLanguage:
    """The language of the demo user's emails: its `users.locale`, where that column exists."""

    column: bool
    locale: str | None = None

    def language(self, settings: Settings) -> str:
        """The tag of the copy its emails are written in (the lookup the worker makes)."""
        return words(settings, self.locale).language

    def shown(self, settings: Settings) -> str:
        """For a person: "Spanish, es", and the stored tag when the copy is another's."""
        tag = self.language(settings)
        shown = language_shown(tag)
        if not self.column:
            return f"{shown} (this database's users have no locale column)"
        if self.locale is None:
            return f"{shown} (users.locale is unset)"
        if self.locale.lower() != tag.lower():
            return f"{shown} (users.locale {self.locale})"
        return shown


async def demo_language(conn: asyncpg.Connection, locale: str | None = None) -> DemoLanguage:
    """The demo user's language, first set to `locale` when given and the column exists."""
    if not await conn.fetchval(SQL_HAS_LOCALE):
        return DemoLanguage(column=False)
    key = demo_user_key(DEMO_HANDLE)
    if locale is not None:
        await conn.execute(SQL_SET_LOCALE, DEMO_HANDLE, key, locale_tag(locale))
    return DemoLanguage(True, await conn.fetchval(SQL_LOCALE, DEMO_HANDLE, key))


# Only users the demo made ($3, $4: their keys).
SQL_DEMO_OWNER = """
SELECT u.id, (SELECT count(*) FROM posts p WHERE p.owner_id = u.id AND p.kind = 'artwork') AS n,
       ARRAY(SELECT f.id FROM users f
             WHERE f.handle = ANY($2::text[]) AND f.user_key = ANY($4::uuid[])
             ORDER BY f.handle) AS fans
FROM users u WHERE u.handle = $1 AND u.user_key = $3
"""

# Tiny images, drawn once and shared by the posts `--posts` adds: thousands in seconds.
_TINY_ARTS = 12


async def add_posts(conn: asyncpg.Connection, vault: Path, ids: PublicIds, count: int) -> int:
    """`count` more artworks for the demo user, with tiny images; how many it has now."""
    row = await conn.fetchrow(
        SQL_DEMO_OWNER,
        DEMO_HANDLE,
        list(FANS),
        demo_user_key(DEMO_HANDLE),
        [demo_user_key(f) for f in FANS],
    )
    if row is None:
        raise CliError(f"there is no @{DEMO_HANDLE} user: load the demo data first")
    first: int = row["n"]
    if count == 0:
        return first
    rng = random.Random(first)
    tiny = [draw(rng, n, tiny=True) for n in range(first, first + min(count, _TINY_ARTS))]
    arts = [tiny[i % len(tiny)] for i in range(count)]
    async with conn.transaction():
        await conn.execute(SET_NO_IDLE_BOUND)  # artworks are written in between
        seeded = Seeded(row["id"], await _licenses(conn), list(row["fans"]))
        added = await insert_posts(conn, vault, ids, seeded, first, arts, rng, datetime.now(UTC))
        # The demo user's open pages show the new posts at once, as they would a host upload's.
        await announce_new(conn, row["id"], added)
    return first + count
