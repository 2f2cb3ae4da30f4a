"""The ZIP's streamed JSON files and its entry names, through the real worker path.

comments.json and reactions.json are written batch by batch from a server-side cursor: they
must be byte for byte what pretty-printing the whole document at once gave. Entry names come
from host rows, which may hold anything: none may leave the `artworks/` folder.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.core.db import create_pool
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from pmd_service.zipbuild.build import BuildCancelled
from pmd_service.zipbuild.content import plan_artworks
from pmd_service.zipbuild.entry_names import post_sqid, safe_part
from pmd_service.zipbuild.row_feed import BATCH_ROWS, RowFeed
from support.seeding import Factory, PostRow, UserRow
from tests.helpers import download_zip, fetch_item, request_bdr, run_worker

Client = TestClient[Any, Any]

BODIES = [
    "plain",
    'a "quote" and a \\ backslash',
    "two\nlines\ttab",
    "emoji 🐉✨ ドット絵",
    "\x01 control",
    "</script>",
    "  spaces  ",
    "x" * 2000,
]


def pretty(doc: Any) -> bytes:
    """How these files were always written: the whole document, pretty-printed at once."""
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"


async def add_comments(
    factory: Factory, post: PostRow, authors: list[UserRow | None], n: int, rng: random.Random
) -> None:
    """`n` comments in one statement: shared timestamps (ordered by id then), replies, every
    kind of body, and a fifth of them hidden or deleted in one of the three ways."""
    base = datetime(2024, 5, 1, tzinfo=UTC)
    ids = [uuid.uuid4() for _ in range(n)]
    flags = [
        rng.choice(
            [(False,) * 3] * 12 + [(True, False, False), (False, True, False), (False, False, True)]
        )
        for _ in range(n)
    ]
    author = [rng.choice(authors) for _ in range(n)]
    await factory.pool.execute(
        """
        INSERT INTO comments (id, post_id, author_id, parent_id, body, created_at,
                              hidden_by_mod, deleted_by_owner, deleted_by_mod)
        SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $4::uuid[], $5::text[],
                             $6::timestamptz[], $7::bool[], $8::bool[], $9::bool[])
        """,
        ids,
        [post.id] * n,
        [a.id if a else None for a in author],
        [rng.choice(ids[:i]) if i and rng.random() < 0.3 else None for i in range(n)],
        [f"{rng.choice(BODIES)} #{i}" for i in range(n)],
        [base + timedelta(seconds=rng.randrange(n // 3 + 1)) for _ in range(n)],
        [f[0] for f in flags],
        [f[1] for f in flags],
        [f[2] for f in flags],
    )


async def expected_comments(
    pool: asyncpg.Pool, posts: list[PostRow]
) -> dict[str, list[dict[str, Any]]]:
    """Visible comments grouped by sqid, posts by id, each thread by (created_at, id): computed
    here in Python, not by the worker's SQL."""
    rows = await pool.fetch(
        """
        SELECT c.*, u.handle FROM comments c LEFT JOIN users u ON u.id = c.author_id
        WHERE c.post_id = ANY($1::int[])
        """,
        [p.id for p in posts],
    )
    visible = [
        r for r in rows if not (r["hidden_by_mod"] or r["deleted_by_owner"] or r["deleted_by_mod"])
    ]
    sqid = {p.id: p.sqid for p in posts}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(visible, key=lambda r: (r["post_id"], r["created_at"], r["id"])):
        grouped.setdefault(sqid[r["post_id"]], []).append(
            {
                "id": str(r["id"]),
                "author_handle": r["handle"] or "anonymous",
                "body": r["body"],
                "body_markup": r["body"],  # no mention in these bodies: plain as stored
                "mentions": [],
                "created_at": r["created_at"],
                "parent_id": str(r["parent_id"]) if r["parent_id"] else None,
            }
        )
    return grouped


async def test_streamed_json_files_are_byte_identical_to_the_whole_document(
    client: Client, factory: Factory, settings: Settings
) -> None:
    rng = random.Random(20240501)
    owner = await factory.user("owner")
    fans: list[UserRow | None] = [await factory.user(f"fan{i}") for i in range(3)]
    authors = [*fans, None]
    posts = [await factory.post(owner, title=f"p{i}") for i in range(4)]
    no_file = await factory.post(owner, title="file gone", data=None)
    # Several batches each, and post boundaries falling inside batches.
    for post, n in zip(posts, [2 * BATCH_ROWS + 17, 0, 3, 3 * BATCH_ROWS - 1], strict=True):
        await add_comments(factory, post, authors, n, rng)
    await add_comments(factory, no_file, authors, 50, rng)  # skipped at build: not exported
    emoji = ["👍", "❤️", "🔥", "😂", "🐉", "a", "b"]
    reacted = [rng.choice([*posts[:3], no_file]) for _ in range(900)]
    await factory.pool.execute(
        "INSERT INTO reactions (post_id, emoji) SELECT unnest($1::int[]), unnest($2::text[])",
        [p.id for p in reacted],
        [rng.choice(emoji) for _ in reacted],
    )
    requested = [p.id for p in reversed([*posts, no_file])]
    item = await request_bdr(
        client, owner, requested, include_comments=True, include_reactions=True
    )
    await run_worker(settings)
    item = await fetch_item(client, owner, item["id"])
    assert item["status"] == "ready", item
    assert [s["reason"] for s in item["skipped"]] == ["file_missing"]
    archive = await download_zip(client, owner, item["id"])

    raw = archive.read("comments.json")
    parsed = json.loads(raw)
    expected = await expected_comments(factory.pool, posts)
    assert sum(len(t) for t in expected.values()) > 3 * BATCH_ROWS  # the test is not vacuous
    assert no_file.sqid not in parsed["comments_by_artwork"]
    assert list(parsed["comments_by_artwork"]) == [p.sqid for p in posts if p.sqid in expected]
    doc = {"generated_at": parsed["generated_at"], "comments_by_artwork": expected}
    assert raw == pretty(doc)  # same bytes, so the same content, order and layout

    raw = archive.read("reactions.json")
    generated_at = json.loads(raw)["generated_at"]
    rows = await factory.pool.fetch(
        "SELECT post_id, emoji FROM reactions WHERE post_id = ANY($1::int[])", [p.id for p in posts]
    )
    counts: dict[int, dict[str, int]] = {}
    for r in rows:
        per_post = counts.setdefault(r["post_id"], {})
        per_post[r["emoji"]] = per_post.get(r["emoji"], 0) + 1
    by_sqid = {
        p.sqid: dict(sorted(counts[p.id].items(), key=lambda kv: (-kv[1], kv[0])))
        for p in posts
        if p.id in counts
    }
    assert raw == pretty({"generated_at": generated_at, "reactions_by_artwork": by_sqid})
    assert archive.getinfo("comments.json").compress_type == zipfile.ZIP_DEFLATED


async def test_nothing_visible_gives_empty_objects(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner = await factory.user()
    post = await factory.post(owner)
    await factory.comment(post, owner, "hidden", hidden_by_mod=True)
    await factory.comment(post, owner, "deleted by mod", deleted_by_mod=True)
    item = await request_bdr(
        client, owner, [post.id], include_comments=True, include_reactions=True
    )
    await run_worker(settings)
    archive = await download_zip(client, owner, item["id"])
    for name, key in (
        ("comments.json", "comments_by_artwork"),
        ("reactions.json", "reactions_by_artwork"),
    ):
        raw = archive.read(name)
        assert raw == pretty({"generated_at": json.loads(raw)["generated_at"], key: {}})


async def test_a_feed_left_halfway_gives_its_connection_back(database_url: str) -> None:
    # One connection only: if the cursor's transaction were left open, the next query would
    # wait for it forever.
    pool = await create_pool(database_url, "pmd-test", min_size=1, max_size=1)
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    sql = "SELECT g AS post_id FROM generate_series(1, $1::int) g ORDER BY g"
    try:
        feed = RowFeed(pool, loop, cancel, sql, 10_000, batch=100)

        def take_two() -> list[int]:
            rows = iter(feed)
            seen = [r["post_id"] for batch in (next(rows), next(rows)) for r in batch]
            rows.close()  # as when the ZIP writer fails mid-file
            return seen

        assert await asyncio.to_thread(take_two) == list(range(1, 201))
        await feed.aclose()
        assert await asyncio.wait_for(pool.fetchval("SELECT 1"), 5) == 1

        cancelled = RowFeed(pool, loop, cancel, sql, 10_000, batch=100)

        def cancel_midway() -> None:
            for n, _ in enumerate(cancelled):
                if n == 1:
                    cancel.set()  # as a DELETE of the request does

        with pytest.raises(BuildCancelled):
            await asyncio.to_thread(cancel_midway)
        await cancelled.aclose()
        assert await asyncio.wait_for(pool.fetchval("SELECT 1"), 5) == 1
    finally:
        await pool.close()


# --- entry names -----------------------------------------------------------------------------

HOSTILE_SQIDS = ["../../../evil", "..\\..\\evil", "ok\x1b[2Jx", "tab\there"]


def assert_safe_names(names: list[str]) -> None:
    for name in names:
        folder, _, leaf = name.rpartition("/")
        assert folder in ("", "artworks"), name
        assert safe_part(leaf), name


async def test_hostile_sqids_and_formats_never_shape_an_entry_name(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner = await factory.user()
    hostile = [await factory.post(owner, fmt="webp") for _ in HOSTILE_SQIDS]
    for post, bad in zip(hostile, HOSTILE_SQIDS, strict=True):
        await factory.pool.execute("UPDATE posts SET public_sqid = $2 WHERE id = $1", post.id, bad)
    # Not the canonical encoding of its id, but made of the alphabet: the host's value is kept.
    odd = await factory.post(owner)
    await factory.pool.execute("UPDATE posts SET public_sqid = 'Zz9' WHERE id = $1", odd.id)
    bad_format = await factory.post(owner)
    await factory.pool.execute(
        "UPDATE post_files SET format = '../../sh' WHERE post_id = $1", bad_format.id
    )
    await factory.comment(hostile[0], owner, "on the evil one")
    await factory.reaction(hostile[1], owner, "🔥")
    everything = [*hostile, odd, bad_format]
    ids = PublicIds(settings.sqids_alphabet)

    plan = await plan_artworks(factory.pool, owner.id, [p.id for p in everything], ids)
    names = {a.post_id: a.filename for a in plan.artworks}
    assert names[bad_format.id] == f"{bad_format.sqid}.bin"

    item = await request_bdr(
        client, owner, [p.id for p in everything], include_comments=True, include_reactions=True
    )
    await run_worker(settings)
    item = await fetch_item(client, owner, item["id"])
    assert item["status"] == "ready", item
    # The vault only opens known formats: the bad one is skipped, under its safe sqid.
    assert item["skipped"] == [
        {"post_id": bad_format.id, "public_sqid": bad_format.sqid, "reason": "file_missing"}
    ]
    archive = await download_zip(client, owner, item["id"])
    expected = [f"artworks/{ids.encode(p.id)}.webp" for p in hostile] + ["artworks/Zz9.png"]
    assert archive.namelist()[:5] == expected
    assert_safe_names(archive.namelist())
    meta = json.loads(archive.read("metadata.json"))
    assert [a["filename"] for a in meta["artworks"]] == [
        n.removeprefix("artworks/") for n in expected
    ]
    assert [a["sqid"] for a in meta["artworks"]] == [ids.encode(p.id) for p in hostile] + ["Zz9"]
    comments = json.loads(archive.read("comments.json"))["comments_by_artwork"]
    assert list(comments) == [ids.encode(hostile[0].id)]
    reactions = json.loads(archive.read("reactions.json"))["reactions_by_artwork"]
    assert reactions == {ids.encode(hostile[1].id): {"🔥": 1}}


def test_an_alphabet_with_separators_still_gives_safe_names() -> None:
    # SQIDS_ALPHABET is configuration: encoding with it may itself give `..` or a separator.
    ids = PublicIds("./\\ab")
    names = [post_sqid(None, n, ids) for n in range(1, 300)]
    assert all(safe_part(n) for n in names)
    assert any(n == ids.encode(i) for i, n in enumerate(names, start=1))  # not always a fallback
    assert post_sqid("ab", 5, ids) == "ab"
    assert post_sqid("a..b", 5, ids) == post_sqid(None, 5, ids)
