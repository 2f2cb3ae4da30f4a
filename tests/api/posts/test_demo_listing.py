"""The demo lists its posts as the host's ORM does: `listed_at` is each post's `created_at`
(the host's feeds order by it), and `demo --posts` still adds posts to a development database
of an older layout, without the column."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmd_service.core.migrate import create_host_tables
from pmd_service.core.public_ids import PublicIds
from pmd_service.dev.demo import add_posts, load_demo
from support.stack import connected

IDS = PublicIds("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@pytest.mark.parametrize("older", [False, True])
async def test_the_demo_lists_each_post_when_it_was_made(
    empty_db: str, tmp_path: Path, older: bool
) -> None:
    async with connected(empty_db, "pmd-test") as conn:
        await create_host_tables(conn)
        if older:
            await conn.execute("ALTER TABLE posts DROP COLUMN listed_at")
        assert await load_demo(conn, tmp_path, IDS, count=6) is not None
        assert await add_posts(conn, tmp_path, IDS, 3) == 9
        if older:
            assert await conn.fetchval("SELECT count(*) FROM posts WHERE kind = 'artwork'") == 9
            return
        rows = await conn.fetch("SELECT created_at, listed_at FROM posts")
    assert len(rows) == 10  # and the playlist
    assert len({r["created_at"] for r in rows}) > 5  # made at different times
    assert all(r["listed_at"] == r["created_at"] for r in rows)
