"""The host's feeds are the host's: every bulk action (by ids and by filter, the owner's and a
moderator's), every undo and every restore leaves `listed_at`, `pending_listing`,
`promoted_at` and `public_visibility` as they were (a restore is neither an approval nor a new
listing), on the host's newest tables as the suite's `grants` role, which the database itself
keeps from writing them. And the seeders set `listed_at` as the host's ORM does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from pmd_service.host.grants import UPDATES, grants_sql
from support.seeding import UserRow, listed_posts, posts_with_files
from tests.host_revisions import BesideHost, beside_host_at

FEED_COLUMNS = ("listed_at", "pending_listing", "promoted_at", "public_visibility")


host = beside_host_at(older=False)


async def _feeds(pool: asyncpg.Pool) -> dict[int, tuple[Any, ...]]:
    rows = await pool.fetch(f"SELECT id, {', '.join(FEED_COLUMNS)} FROM posts ORDER BY id")
    return {r["id"]: tuple(r[c] for c in FEED_COLUMNS) for r in rows}


async def _act(host: BesideHost, user: UserRow, path: str, body: dict[str, Any]) -> Any:
    resp = await host.client.post(path, json=body, headers=user.auth)
    assert resp.status == 200, (path, body, await resp.text())
    return await resp.json()


async def test_no_action_undo_or_restore_touches_the_hosts_feed_columns(host: BesideHost) -> None:
    owner = await host.site.user("painter", ["user"])
    mod = await host.site.user("keeper", ["user", "moderator"])
    ids = [(await host.site.post(owner, n, legacy=n == 1)).id for n in range(3)]
    license_id = await host.pool.fetchval(
        "INSERT INTO licenses (identifier, title, canonical_url, badge_path)"
        " VALUES ('CC-BY-4.0', 'Attribution', 'https://creativecommons.org', '/b.svg') RETURNING id"
    )
    # Distinctive values, each post its own: what the host's feeds and approvals wrote.
    await host.pool.execute(
        """UPDATE posts SET listed_at = timestamptz '2011-11-11 11:11:11+00' + id * interval '1 h',
                            promoted_at = CASE WHEN id % 2 = 0
                                THEN timestamptz '2012-12-12 12:12:12+00' + id * interval '1 m' END,
                            pending_listing = (ARRAY['first', 'replace', NULL])[id % 3 + 1],
                            public_visibility = id % 3 <> 1"""
    )
    before = await _feeds(host.pool)
    assert len({v for row in before.values() for v in row[:3]}) > 5  # distinctive indeed

    as_mod = f"?target_sqid={owner.sqid}"
    everything = {"filter": {}, "expect_count": len(ids)}
    chosen = {"post_ids": ids}
    steps: list[tuple[UserRow, str, dict[str, Any]]] = []
    for way in (chosen, everything):
        steps += [
            (owner, "/api/pmd/action", {"action": "hide"} | way),
            (owner, "/api/pmd/action", {"action": "unhide"} | way),
            (owner, "/api/pmd/action", {"action": "delete"} | way),
            (owner, "/api/pmd/action", {"action": "restore"} | way),
            (owner, "/api/pmd/license", {"license_id": license_id} | way),
            (owner, "/api/pmd/license", {"license_id": None} | way),
            (owner, "/api/pmd/action", {"action": "tags", "add": ["feed"]} | way),
            (owner, "/api/pmd/action", {"action": "tags", "remove": ["feed"]} | way),
            (owner, "/api/pmd/action", {"action": "remixable", "value": False} | way),
            (owner, "/api/pmd/action", {"action": "remixable", "value": True} | way),
            (mod, f"/api/pmd/action{as_mod}", {"action": "hide"} | way),
            (mod, f"/api/pmd/action{as_mod}", {"action": "unhide"} | way),
            (mod, f"/api/pmd/action{as_mod}", {"action": "delete"} | way),
            (mod, f"/api/pmd/action{as_mod}", {"action": "restore"} | way),
            (mod, f"/api/pmd/action{as_mod}", {"action": "tags", "add": ["mod"]} | way),
            (mod, f"/api/pmd/license{as_mod}", {"license_id": license_id} | way),
            (mod, f"/api/pmd/action{as_mod}", {"action": "tags", "remove": ["mod"]} | way),
            (mod, f"/api/pmd/license{as_mod}", {"license_id": None} | way),
        ]
    undone = 0
    for user, path, body in steps:
        answer = await _act(host, user, path, body)
        assert answer["affected_count"] == len(ids), (path, body, answer)
        assert await _feeds(host.pool) == before, (path, body)
        # Its undo, then the action again, so the next step has something to change.
        resp = await host.client.post(answer["undo"], headers=user.auth)
        assert resp.status == 200, (path, body, await resp.text())
        undone += 1
        assert await _feeds(host.pool) == before, ("undo", path, body)
        await _act(host, user, path, body)
        assert await _feeds(host.pool) == before, ("again", path, body)
    assert undone == len(steps)


async def test_the_database_keeps_the_service_from_writing_them(
    host: BesideHost, host_role_url: str
) -> None:
    """`grants` gives UPDATE on posts column by column, none of these among them: a statement
    of the service writing one is refused by PostgreSQL itself."""
    granted = " ".join(line for line in grants_sql("pmd").splitlines() if "GRANT UPDATE" in line)
    assert granted and not any(column in granted for column in FEED_COLUMNS)
    assert not set(FEED_COLUMNS) & set(UPDATES["posts"])
    owner = await host.site.user("painter", ["user"])
    post = await host.site.post(owner, 1, legacy=False)
    role = await asyncpg.connect(host_role_url)
    try:
        assert await role.fetchval("SELECT has_table_privilege('posts', 'UPDATE')") is False
        for column, value in [
            ("listed_at", "now()"),
            ("pending_listing", "NULL"),
            ("promoted_at", "now()"),
            ("public_visibility", "true"),
        ]:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await role.execute(f"UPDATE posts SET {column} = {value} WHERE id = $1", post.id)
        # What the service does write, the same way, it may.
        await role.execute("UPDATE posts SET hidden_by_user = true WHERE id = $1", post.id)
    finally:
        await role.close()


async def test_the_seeders_list_a_post_when_it_was_made(host: BesideHost) -> None:
    """As the host's ORM on insert (and its migration's backfill): listed_at = created_at."""
    owner = await host.site.user("painter", ["user"])
    then = datetime.now(UTC) - timedelta(days=3)
    license_id = await host.pool.fetchval(
        "INSERT INTO licenses (identifier, title, canonical_url, badge_path)"
        " VALUES ('CC0-1.0', 'CC0', 'https://creativecommons.org', '/c.svg') RETURNING id"
    )
    made = [
        (await host.site.post(owner, 5, legacy=False)).id,  # five minutes ago
        (await host.site.rows.post(owner, created_at=then)).id,
        (await host.site.rows.post(owner)).id,  # now
        *await host.site.rows.posts_bulk(owner, 2, created_at=then),
        *await host.site.rows.posts_bulk(owner, 2),
        *await listed_posts(host.pool, owner.id, 3, "artwork", license_id, False),  # in 2024
        *await posts_with_files(
            host.pool, host.site.rows.ids, owner.id, [uuid.uuid4()], ["ab"], [then], [100]
        ),
    ]
    rows = await host.pool.fetch(
        "SELECT id, created_at, listed_at FROM posts WHERE id = ANY($1::int[])", made
    )
    assert len(rows) == len(made)
    assert all(r["listed_at"] == r["created_at"] for r in rows), [dict(r) for r in rows]
    assert sum(r["created_at"] == then for r in rows) == 4
