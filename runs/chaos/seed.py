"""The chaos run's seed: users with hundreds of real image files each, comments, reactions, a
few missing files; and a "victim" whose big files make a build slow enough to kill midway."""

from __future__ import annotations

import io
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from pmd_service.core.public_ids import PublicIds
from pmd_service.host.tokens import mint_token
from pmd_service.host.vault import artwork_path

FORMATS = ["png", "png", "png", "gif", "webp", "bmp"]
EMOJI = ["👍", "❤️", "🔥", "✨"]


@dataclass
class SeedPost:
    id: int
    sqid: str
    fmt: str
    path: Path
    has_file: bool


@dataclass
class SeedUser:
    id: int
    sqid: str
    handle: str
    token: str
    # Disjoint, so an actor's model of its posts stays exact: `actions` are hidden, deleted,
    # restored, relicensed; `downloads` requested and never deleted; `doomed` requested, then
    # deleted while the BDR may be pending.
    actions: list[int] = field(default_factory=list)
    downloads: list[int] = field(default_factory=list)
    doomed: list[int] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Seed:
    users: list[SeedUser]
    victim: SeedUser
    posts: dict[int, SeedPost]
    licenses: list[int]
    stranger_post: int  # someone else's post: a batch naming it must be refused whole


def image(rng: random.Random, fmt: str, side: int) -> bytes:
    """A real image of noise (incompressible: the ZIP stores it as is), unique per call."""
    from PIL import Image

    if fmt == "gif":
        img = Image.frombytes("P", (side, side), rng.randbytes(side * side))
        img.putpalette(list(rng.randbytes(768)))
    else:
        img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    out = io.BytesIO()
    img.save(out, {"webp": "WEBP", "bmp": "BMP", "gif": "GIF"}.get(fmt, "PNG"),
             **({"lossless": True} if fmt == "webp" else {}))  # fmt: skip
    return out.getvalue()


async def _user(conn: asyncpg.Connection, ids: PublicIds, secret: str, handle: str) -> SeedUser:
    user_id: int = await conn.fetchval(
        "INSERT INTO users (handle, email, roles) VALUES ($1, $2, '[\"user\"]') RETURNING id",
        handle, f"{handle}@chaos.test",
    )  # fmt: skip
    sqid = ids.encode(user_id)
    await conn.execute("UPDATE users SET public_sqid = $2 WHERE id = $1", user_id, sqid)
    return SeedUser(user_id, sqid, handle, mint_token(secret, sqid, ttl_seconds=6 * 3600))


async def _posts(
    conn: asyncpg.Connection, ids: PublicIds, vault: Path, rng: random.Random, owner: SeedUser,
    n: int, side: tuple[int, int], missing_share: float, formats: list[str],
) -> list[SeedPost]:  # fmt: skip
    """`n` posts of `owner`, each with an image of `side` pixels in the vault but a
    `missing_share` of them."""
    rows: list[tuple[uuid.UUID, str, bytes | None]] = []
    for key in (uuid.uuid4() for _ in range(n)):
        fmt = rng.choice(formats)
        rows.append((key, fmt, None if rng.random() < missing_share
                     else image(rng, fmt, rng.randint(*side))))  # fmt: skip
    keys = [r[0] for r in rows]
    created = await conn.fetch(
        """
        INSERT INTO posts (storage_key, storage_shard, owner_id, title, width, height, created_at)
        SELECT k, s, $3, 'chaos ' || g, 64, 64, now() - make_interval(mins => g::int)
        FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS t(k, s, g)
        RETURNING id, storage_key
        """,
        keys, [k.hex[:2] for k in keys], owner.id,
    )  # fmt: skip
    by_key = {r["storage_key"]: r["id"] for r in created}
    out = []
    for key, fmt, body in rows:
        path = artwork_path(vault, key.hex[:2], key, fmt)
        if body is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        out.append(SeedPost(by_key[key], ids.encode(by_key[key]), fmt, path, body is not None))
    await conn.execute(
        "UPDATE posts p SET public_sqid = s.sqid FROM unnest($1::int[], $2::text[]) AS s(id, sqid)"
        " WHERE p.id = s.id",
        [p.id for p in out], [p.sqid for p in out],
    )  # fmt: skip
    await conn.executemany(
        "INSERT INTO post_files (post_id, format, file_bytes, is_native) VALUES ($1, $2, $3, true)",
        [(p.id, p.fmt, p.path.stat().st_size if p.has_file else 0) for p in out],
    )
    return out


async def seed(
    conn: asyncpg.Connection, vault: Path, secret: str, ids: PublicIds, *, users: int,
    posts_per_user: int, victim_posts: int, rng: random.Random,
) -> Seed:  # fmt: skip
    sql = "INSERT INTO licenses (identifier, title) VALUES ($1, $1) RETURNING id"
    licenses = [await conn.fetchval(sql, i) for i in ("CC-BY-4.0", "CC0-1.0", "ARR")]
    fans = [await _user(conn, ids, secret, f"fan{i}") for i in range(3)]
    people: list[SeedUser] = []
    posts: dict[int, SeedPost] = {}
    for i in range(users):
        user = await _user(conn, ids, secret, f"chaos{i}")
        made = await _posts(conn, ids, vault, rng, user, posts_per_user, (16, 110), 0.03, FORMATS)
        posts.update((p.id, p) for p in made)
        # Actions and doomed posts need files only so a restored one can be requested again.
        user.actions = [p.id for p in made[:60]]
        user.doomed = [p.id for p in made[60:75] if p.has_file]
        user.downloads = [p.id for p in made[75:]]
        people.append(user)
        await conn.executemany(
            "INSERT INTO comments (post_id, author_id, body, hidden_by_mod, deleted_by_owner)"
            " VALUES ($1, $2, $3, $4, $5)",
            [(p.id, rng.choice(fans).id, f"comment {j} on {p.sqid}", j == 2, j == 3)
             for p in made[75:] for j in range(rng.randrange(5))],
        )  # fmt: skip
        await conn.executemany(
            "INSERT INTO reactions (post_id, user_id, emoji) VALUES ($1, $2, $3)",
            [(p.id, rng.choice(fans).id, rng.choice(EMOJI))
             for p in made[75:] for _ in range(rng.randrange(4))],
        )  # fmt: skip
    victim = await _user(conn, ids, secret, "victim")
    # ~0.5 MB BMPs: a 128-artwork ZIP of ~60 MB takes long enough to be caught mid-build.
    big = await _posts(conn, ids, vault, rng, victim, victim_posts, (380, 420), 0.0, ["bmp"])
    posts.update((p.id, p) for p in big)
    victim.downloads = [p.id for p in big]
    return Seed(people, victim, posts, licenses, stranger_post=big[0].id)
