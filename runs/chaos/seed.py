"""The chaos run's seed: users with hundreds of real images each, and a "victim" whose big files
make a build slow enough to kill midway."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from support.seeding import Factory, PostRow, UserRow

FORMATS = ["png", "png", "png", "gif", "webp", "bmp"]
EMOJI = ["👍", "❤️", "🔥", "✨"]


@dataclass(frozen=True)
class SeedUser(UserRow):
    # Disjoint, so an actor's model of its posts stays exact; `doomed` are deleted once requested.
    actions: list[int] = field(default_factory=list)
    downloads: list[int] = field(default_factory=list)
    doomed: list[int] = field(default_factory=list)


@dataclass
class Seed:
    users: list[SeedUser]
    victim: SeedUser
    posts: dict[int, PostRow]  # `data` None: its file is missing
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
    img.save(out, fmt.upper(), **({"lossless": True} if fmt == "webp" else {}))
    return out.getvalue()


async def _posts(
    factory: Factory,
    rng: random.Random,
    owner: UserRow,
    n: int,
    side: tuple[int, int],
    missing_share: float,
    formats: list[str],
) -> list[PostRow]:
    now, out = datetime.now(UTC), []
    for g in range(1, n + 1):
        fmt = rng.choice(formats)
        data = None if rng.random() < missing_share else image(rng, fmt, rng.randint(*side))
        out.append(
            await factory.post(
                owner,
                title=f"chaos {g}",
                fmt=fmt,
                data=data,
                width=64,
                height=64,
                created_at=now - timedelta(minutes=g),
            )
        )
    return out


async def seed(
    factory: Factory, *, users: int, posts_per_user: int, victim_posts: int, rng: random.Random
) -> Seed:
    licenses = [await factory.license(i) for i in ("CC-BY-4.0", "CC0-1.0", "ARR")]
    fans = [await factory.user(f"fan{i}") for i in range(3)]
    people: list[SeedUser] = []
    posts: dict[int, PostRow] = {}
    for i in range(users):
        user = await factory.user(f"chaos{i}", ttl=6 * 3600)
        made = await _posts(factory, rng, user, posts_per_user, (16, 110), 0.03, FORMATS)
        posts.update((p.id, p) for p in made)
        actions, downloads = [p.id for p in made[:60]], [p.id for p in made[75:]]
        doomed = [p.id for p in made[60:75] if p.data is not None]
        people.append(SeedUser(**asdict(user), actions=actions, downloads=downloads, doomed=doomed))
        for p in made[75:]:
            for j in range(rng.randrange(5)):
                await factory.comment(
                    p,
                    rng.choice(fans),
                    f"comment {j} on {p.sqid}",
                    hidden_by_mod=j == 2,
                    deleted_by_owner=j == 3,
                )
            for _ in range(rng.randrange(4)):
                await factory.reaction(p, rng.choice(fans), rng.choice(EMOJI))
    victim = await factory.user("victim", ttl=6 * 3600)
    # ~0.5 MB BMPs: a 128-artwork ZIP of ~60 MB takes long enough to be caught mid-build.
    big = await _posts(factory, rng, victim, victim_posts, (380, 420), 0.0, ["bmp"])
    posts.update((p.id, p) for p in big)
    seeded = SeedUser(**asdict(victim), downloads=[p.id for p in big])
    return Seed(people, seeded, posts, licenses, stranger_post=big[0].id)


def zip_problems(row: Any, data: bytes, seed: Seed) -> list[str]:
    """The ZIP's bytes against the row (size, sha256) and the seed (its entries, byte-exact)."""
    problems, bdr = [], row["id"]
    digest = hashlib.sha256(data).hexdigest()
    if (len(data), digest) != (row["file_size_bytes"], row["file_sha256"]):
        problems.append(f"{bdr}: size/sha256 on disk differ from the row")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if (bad := z.testzip()) is not None:
                return [*problems, f"{bdr}: CRC error in {bad}"]
            names = set(z.namelist())
            skipped = {s["post_id"]: s["reason"] for s in row["skipped"]}
            wanted = [seed.posts[p] for p in row["post_ids"] if p not in skipped]
            expect = {f"artworks/{p.sqid}.{p.fmt}" for p in wanted}
            expect |= {"metadata.json", "manifest-sha256.txt"}
            expect |= {"comments.json"} if row["include_comments"] else set()
            expect |= {"reactions.json"} if row["include_reactions"] else set()
            if names != expect:
                problems.append(
                    f"{bdr}: entries differ: extra {sorted(names - expect)[:5]}, "
                    f"missing {sorted(expect - names)[:5]}"
                )
            for p in wanted:
                name = f"artworks/{p.sqid}.{p.fmt}"
                if name in names and z.read(name) != p.data:
                    problems.append(f"{bdr}: {name} differs from the vault file")
            for p in row["post_ids"]:
                if seed.posts[p].data is None and skipped.get(p) not in ("file_missing", "deleted"):
                    problems.append(f"{bdr}: post {p} has no file but was not skipped as missing")
    except zipfile.BadZipFile as exc:
        problems.append(f"{bdr}: not a ZIP ({exc})")
    return problems
