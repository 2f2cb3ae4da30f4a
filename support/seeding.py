"""The one seeder of the tests, benchmarks and runs: rows naming only the columns that matter."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from pmd_service.dev.demo import SQL_HAS_LISTED_AT
from pmd_service.host.tokens import mint_token
from pmd_service.host.vault import artwork_path, host_shard
from pmd_service.zipbuild.content import Artwork
from support.stack import connected

# Tens of thousands of rows beside eight busy test workers outlast the pool's 30 s a statement.
_BULK_SECONDS = 300
_FLAGS = "id, hidden_by_user, hidden_by_mod, deleted_by_user, deleted_by_user_date, license_id"

# {listed_at} and {created}: listed_at set to created_at where posts have it, as the host does.
SQL_POSTS_BULK = """
INSERT INTO posts (storage_key, storage_shard, owner_id, title, kind, created_at{listed_at})
SELECT gen_random_uuid(), 'bk', $1, $2 || ' ' || g, $3, created{created}
FROM generate_series(1, $5) g, (SELECT coalesce($4::timestamptz, now()) AS created) AS t
RETURNING id
"""
SQL_LISTED_POSTS = """
INSERT INTO posts (storage_key, storage_shard, owner_id, title, description, kind, width, height,
                   frame_count, art_url, view_count, license_id, created_at, hidden_by_user,
                   deleted_by_user, deleted_by_user_date{listed_at})
SELECT gen_random_uuid(), to_hex(g % 256), $1, 'Artwork ' || g, 'A piece of pixel art #' || g,
       $3, 64, 64, 1 + g % 8, '/vault/' || to_hex(g % 256) || '/' || g || '.png', g % 1000,
       CASE WHEN g % 3 = 0 THEN $4::int END, created, g % 17 = 0, $5,
       CASE WHEN $5 THEN now() - interval '1 day' END{created}
FROM generate_series(1, $2) AS g,
     LATERAL (SELECT timestamptz '2024-01-01' + make_interval(secs => (g / 4)::double precision)
              AS created) AS t
RETURNING id
"""
SQL_POSTS_WITH_FILES = """
INSERT INTO posts (storage_key, storage_shard, owner_id, title, created_at{listed_at})
SELECT k, s, $3, 'artwork ' || o, created{created}
FROM unnest($1::uuid[], $2::text[], $4::timestamptz[]) WITH ORDINALITY AS u(k, s, created, o)
ORDER BY o
RETURNING id
"""
SQL_PNG_FILES = """
INSERT INTO post_files (post_id, format, file_bytes, is_native)
SELECT i, 'png', b, true FROM unnest($1::int[], $2::int[]) AS u(i, b)
"""
SQL_BULK_USERS = """
INSERT INTO users (handle, email)
SELECT $2::text || g, $2::text || g || '@example.com' FROM generate_series(1, $1) g
RETURNING id, handle
"""
SQL_PROCESSING_BDRS = """
INSERT INTO batch_download_requests (user_id, post_ids, artwork_count, status)
SELECT u, ARRAY[1, 2, 3, 4], 4, 'processing' FROM unnest($1::int[]) AS u
RETURNING id, user_id
"""
# Different comments of ~2 KB, some anonymous, some hidden.
SQL_BULK_COMMENTS = """
INSERT INTO comments (post_id, author_id, body, created_at, hidden_by_mod)
SELECT $1::int, CASE WHEN g % 7 = 0 THEN NULL ELSE $2::int END,
       left(repeat(md5(g::text) || ' ' || md5((g * 31)::text) || ' ✨ ', 32), 2000),
       timestamptz '2024-01-01' + make_interval(secs => g / 3), g % 50 = 0
FROM generate_series(1, $3::int) g
"""
SQL_BULK_REACTIONS = """
INSERT INTO reactions (post_id, emoji)
SELECT $1, (ARRAY['👍','❤️','🔥'])[g % 3 + 1] FROM generate_series(1, $2) g
"""
SQL_ALL_FILES = """
INSERT INTO post_files (post_id, format, file_bytes, is_native)
SELECT id, 'png', 1000 + id % 5000, true FROM posts
UNION ALL SELECT id, 'webp', 800 + id % 4000, false FROM posts WHERE id % 2 = 0
"""
SQL_ALL_COMMENTS = """
INSERT INTO comments (post_id, author_id, body, hidden_by_mod, deleted_by_owner)
SELECT p.id, $1, 'Nice work', c = 3 AND p.id % 2 = 0, c = 3 AND p.id % 2 = 1
FROM posts p, generate_series(1, 3) AS c
"""
SQL_ALL_REACTIONS = """
INSERT INTO reactions (post_id, user_id, emoji)
SELECT p.id, $1, (ARRAY['❤️', '🔥', '👍', '✨', '😂'])[r] FROM posts p, generate_series(1, 5) AS r
"""


async def insert_row(conn: Any, table: str, returning: str = "id", **cols: Any) -> Any:
    """A row of `table` with `cols` (the others take their defaults): its `returning` column."""
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) RETURNING {returning}"
    return await conn.fetchval(sql, *cols.values())


async def set_sqids(conn: Any, ids: PublicIds, table: str, row_ids: list[int]) -> list[str]:
    sqids = [ids.encode(i) for i in row_ids]
    await conn.execute(
        f"UPDATE {table} t SET public_sqid = s.sqid"
        " FROM unnest($1::int[], $2::text[]) AS s(id, sqid) WHERE t.id = s.id",
        row_ids,
        sqids,
        timeout=_BULK_SECONDS,
    )
    return sqids


async def has_listed_at(conn: Any) -> bool:
    return bool(await conn.fetchval(SQL_HAS_LISTED_AT))


async def _insert_posts(conn: Any, sql: str, *args: Any, **options: Any) -> list[int]:
    """The ids of the posts `sql` (one of the INSERT … SELECTs above) inserts."""
    listed = {"listed_at": ", listed_at", "created": ", created"}
    if not await has_listed_at(conn):
        listed = dict.fromkeys(listed, "")
    return [r["id"] for r in await conn.fetch(sql.format(**listed), *args, **options)]


@dataclass(frozen=True)
class UserRow:
    id: int
    sqid: str
    handle: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class PostRow:
    id: int
    sqid: str
    storage_key: uuid.UUID
    shard: str
    fmt: str
    data: bytes | None


class Factory:
    def __init__(self, pool: Any, settings: Settings) -> None:
        self.pool: asyncpg.Pool = pool  # a Connection has the same methods the seeder calls
        self.settings = settings
        self.ids = PublicIds(settings.sqids_alphabet)
        self._n = 0
        self._listed_at: bool | None = None  # whether posts have listed_at, asked once

    def token(self, sqid: str, ttl: int = 3600) -> str:
        return mint_token(self.settings.jwt_secret_key, sqid, ttl_seconds=ttl)

    async def row(self, table: str, returning: str = "id", **cols: Any) -> Any:
        return await insert_row(self.pool, table, returning, **cols)

    async def user(
        self,
        handle: str | None = None,
        roles: list[str] | None = None,
        ttl: int = 3600,
        **cols: Any,
    ) -> UserRow:
        self._n += 1
        handle = handle or f"user{self._n}_{uuid.uuid4().hex[:6]}"
        base = {"handle": handle, "email": f"{handle}@example.com", "roles": roles or ["user"]}
        user_id: int = await self.row("users", **(base | cols))
        (sqid,) = await set_sqids(self.pool, self.ids, "users", [user_id])
        return UserRow(user_id, sqid, handle, self.token(sqid, ttl))

    async def post(
        self,
        owner: UserRow,
        *,
        title: str = "Artwork",
        fmt: str = "png",
        data: bytes | None = b"",
        shard: str | None = None,
        key: uuid.UUID | None = None,
        **cols: Any,
    ) -> PostRow:
        """An artwork; `data` goes to the vault (b"": generated bytes, None: no file)."""
        key = key or uuid.uuid4()
        self._n += 1
        shard = shard if shard is not None else host_shard(key, legacy=self._n % 2 == 0)
        if "created_at" in cols:  # else both default to now()
            if self._listed_at is None:
                self._listed_at = await has_listed_at(self.pool)
            if self._listed_at:
                cols.setdefault("listed_at", cols["created_at"])
        post_id: int = await self.row(
            "posts", storage_key=key, storage_shard=shard, owner_id=owner.id, title=title, **cols
        )
        if data == b"":
            data = f"PIXELS:{post_id}:".encode() + uuid.uuid4().bytes * 16
        if data is not None:
            path = artwork_path(self.settings.vault_path, shard, key, fmt)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        size = len(data or b"")
        await self.row(
            "post_files", "post_id", post_id=post_id, format=fmt, file_bytes=size, is_native=True
        )
        (sqid,) = await set_sqids(self.pool, self.ids, "posts", [post_id])
        return PostRow(post_id, sqid, key, shard, fmt, data)

    async def comment(
        self, post: PostRow, author: UserRow | None, body: str, **cols: Any
    ) -> uuid.UUID:
        author_id = author.id if author else None
        comment_id: uuid.UUID = await self.row(
            "comments", post_id=post.id, author_id=author_id, body=body, **cols
        )
        return comment_id

    async def reaction(self, post: PostRow, user: UserRow | None, emoji: str) -> None:
        user_id = user.id if user else None
        await self.row("reactions", post_id=post.id, user_id=user_id, emoji=emoji)

    async def license(self, identifier: str) -> int:
        return int(await self.row("licenses", identifier=identifier, title=identifier))

    async def owner_and_posts(self, count: int) -> tuple[UserRow, list[PostRow]]:
        owner = await self.user()
        return owner, [await self.post(owner) for _ in range(count)]

    async def caller_and_posts(
        self, count: int, roles: list[str] | None = None
    ) -> tuple[UserRow, UserRow, list[int]]:
        """A new user with `roles`, and another new user with `count` posts: their ids."""
        caller = await self.user(roles=roles)
        return caller, *await self.owner_and_bulk(count)

    async def owner_and_bulk(self, count: int) -> tuple[UserRow, list[int]]:
        owner = await self.user()
        return owner, await self.posts_bulk(owner, count)

    async def posts_bulk(
        self,
        owner: UserRow,
        count: int,
        *,
        created_at: datetime | None = None,
        kind: str = "artwork",
        title: str = "Bulk",
    ) -> list[int]:
        """`count` posts (no vault files) in a few statements: their ids, ascending."""
        args = (owner.id, title, kind, created_at, count)
        ids = sorted(await _insert_posts(self.pool, SQL_POSTS_BULK, *args, timeout=_BULK_SECONDS))
        await set_sqids(self.pool, self.ids, "posts", ids)
        await self.pool.execute(SQL_PNG_FILES, ids, [100] * len(ids), timeout=_BULK_SECONDS)
        return ids

    async def post_flags(self, post_ids: list[int]) -> dict[int, dict[str, Any]]:
        rows = await self.pool.fetch(
            f"SELECT {_FLAGS} FROM posts WHERE id = ANY($1::int[])", post_ids
        )
        return {r["id"]: dict(r) for r in rows}


async def posts_state(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every post's flags and license, by id: equal before and after means nothing changed."""
    return [dict(r) for r in await pool.fetch(f"SELECT {_FLAGS} FROM posts ORDER BY id")]


class HostSite:
    """Rows written the way the host's code writes them."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool, self.rows = pool, Factory(pool, settings)

    async def user(self, handle: str, roles: list[str]) -> UserRow:
        row = await self.rows.user(
            handle, roles, user_key=uuid.uuid4(), handle_normalized=handle.lower()
        )
        secret = self.rows.settings.jwt_secret_key
        return replace(row, token=mint_token(secret, row.sqid, roles=roles))

    async def post(self, owner: UserRow, n: int, *, legacy: bool) -> PostRow:
        key = uuid.uuid4()
        shard = host_shard(key, legacy=legacy)
        return await self.rows.post(
            owner,
            key=key,
            shard=shard,
            title=f"Art {n}",
            data=f"PIXELS {n} ".encode() + os.urandom(3000),
            art_url=f"/vault/{shard}/{key}.png",
            created_at=datetime.now(UTC) - timedelta(minutes=n),
        )


async def bulk_users(conn: Any, settings: Settings, prefix: str, n: int) -> list[UserRow]:
    rows = await conn.fetch(SQL_BULK_USERS, n, prefix)
    ids = [r["id"] for r in rows]
    sqids = await set_sqids(conn, PublicIds(settings.sqids_alphabet), "users", ids)
    tokens = [mint_token(settings.jwt_secret_key, sqid) for sqid in sqids]
    return list(map(UserRow, ids, sqids, [r["handle"] for r in rows], tokens))


@dataclass(frozen=True)
class Seeded:
    tokens: list[str]
    bdr_ids: list[uuid.UUID]


async def seed_stream_users(settings: Settings, users: int) -> Seeded:
    """`users` users, each with a token and a BDR in `processing`: the SSE benchmarks'."""
    async with connected(settings.database_url, "pmd-bench-seed") as conn:
        made = await bulk_users(conn, settings, "sse", users)
        bdrs = await conn.fetch(SQL_PROCESSING_BDRS, [u.id for u in made])
        by_user = {r["user_id"]: r["id"] for r in bdrs}
        await conn.execute("VACUUM ANALYZE")
    return Seeded([u.token for u in made], [by_user[u.id] for u in made])


async def bdr_row(conn: Any, user_id: int, post_ids: list[int], **cols: Any) -> uuid.UUID:
    row: dict[str, Any] = {"user_id": user_id, "post_ids": post_ids, "artwork_count": len(post_ids)}
    bdr_id: uuid.UUID = await insert_row(conn, "batch_download_requests", **row, **cols)
    return bdr_id


async def listed_posts(
    conn: Any, user: int, count: int, kind: str, license_id: int, deleted: bool
) -> list[int]:
    return await _insert_posts(conn, SQL_LISTED_POSTS, user, count, kind, license_id, deleted)


async def files_comments_reactions(conn: Any, fan: int) -> None:
    await conn.execute(SQL_ALL_FILES)
    await conn.execute(SQL_ALL_COMMENTS, fan)
    await conn.execute(SQL_ALL_REACTIONS, fan)


async def posts_with_files(
    conn: Any,
    ids: PublicIds,
    owner: int,
    keys: list[uuid.UUID],
    shards: list[str],
    created: list[datetime],
    sizes: list[int],
) -> list[int]:
    post_ids = await _insert_posts(conn, SQL_POSTS_WITH_FILES, keys, shards, owner, created)
    await set_sqids(conn, ids, "posts", post_ids)
    await conn.execute(SQL_PNG_FILES, post_ids, sizes)
    return post_ids


def png_artwork(post_id: int, shard: str, key: uuid.UUID, title: str = "") -> Artwork:
    """A one-frame PNG artwork at `shard`/`key` as a build reads it, bare and made now."""
    return Artwork(
        post_id=post_id,
        sqid=f"p{post_id}",
        title=title,
        description=None,
        created_at=datetime.now(UTC),
        width=None,
        height=None,
        frame_count=1,
        hashtags=[],
        storage_shard=shard,
        storage_key=key,
        fmt="png",
    )
