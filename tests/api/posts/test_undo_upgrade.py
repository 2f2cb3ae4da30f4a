"""Undo across an upgrade from 0.1.0 (its undo history in `bulk_action_posts`), the release
before the previous one, whose history this release still converts: its actions, recorded by
its own statements (read from git at its tag or commit) on its own schema, before the new
migrations or after them by a server of it still serving, are undone by this release within
their 24 hours, each post put back."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from pytest_aiohttp import AiohttpClient

from pmd_service.core.db import create_pool
from pmd_service.core.migrate import apply_migrations
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow
from support.stack import connected
from tests.helpers import CHECKOUT, direct, scratch_database
from tests.unit.test_previous_release_events import previous_release_folder, previous_release_rev

# The release whose history is converted (posts/previous_history.py), and its last migration.
RELEASE, LAST_MIGRATION = "0.1.0", 12

# What an undo puts back, post by post.
_STATE = """
SELECT id, hidden_by_user, hidden_by_mod, deleted_by_user, deleted_by_user_date, license_id,
       remixable, hashtags
FROM posts ORDER BY id
"""


def previous_statements(tmp_path: Path) -> dict[str, str]:
    """The previous release's batch statements, from its own code."""
    src = tmp_path / "release"
    src.mkdir()
    tree = subprocess.run(
        [
            "git",
            "-C",
            str(CHECKOUT),
            "archive",
            "--format=tar",
            previous_release_rev(RELEASE),
            "pmd_service",
        ],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        archive.extractall(src, filter="data")
    # Its package first on the path: the working folder, for `-c`.
    probe = (
        "import json, pmd_service.posts.batch_sql as q; "
        "print(json.dumps([q.__file__, {n: getattr(q, n) for n in dir(q) if n.startswith('SQL_')}]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=src, env=env, capture_output=True, text=True, check=True
    ).stdout
    where, statements = json.loads(out)
    assert where.startswith(str(src)), where
    return dict(statements)


old_db = scratch_database("pmd_prev_undo")


async def test_the_previous_releases_actions_are_undone_after_the_upgrade(
    old_db: str,
    tmp_path: Path,
    settings: Settings,
    aiohttp_client: AiohttpClient,
    redis_clean: None,
) -> None:
    old = previous_statements(tmp_path)
    async with connected(old_db) as conn:
        applied = await apply_migrations(
            conn, previous_release_folder(tmp_path, RELEASE, LAST_MIGRATION), with_host_tables=True
        )
        assert applied[-3:] == [
            "0012_generated_event_payloads",
            "repeatable bdr_events",
            "repeatable export_events",
        ]
    pool = await create_pool(old_db, "pmd-test-upgrade", min_size=1, max_size=4)
    try:
        factory = Factory(pool, settings)
        owner = await factory.user()
        mod = await factory.user(roles=["user", "moderator"])
        ids = await factory.posts_bulk(owner, 8)
        nd = await factory.license("CC-BY-ND-4.0")
        by, by_sa = await factory.license("CC-BY-4.0"), await factory.license("CC-BY-SA-4.0")
        # Licenses that differ post by post: an undo must put back each post's own, not NULL.
        await pool.execute(
            "UPDATE posts SET hashtags = '{a,b}',"
            " license_id = CASE WHEN id % 2 = 0 THEN $1::int ELSE $2::int END",
            by,
            by_sa,
        )
        await pool.execute(
            "UPDATE posts SET deleted_by_user = true, deleted_by_user_date = now() - interval '1 day' WHERE id = $1",
            ids[7],
        )
        await pool.execute(
            "INSERT INTO moderator_deletions (post_id, owner_id, deleted_by) VALUES ($1, $2, $3)",
            ids[7],
            owner.id,
            mod.id,
        )
        before = [tuple(r) for r in await pool.fetch(_STATE)]

        async def by_previous(
            sql: str, post_ids: list[int], action: str, actor: UserRow | None, *values: Any
        ) -> None:
            row = await pool.fetchrow(
                old[sql], owner.id, post_ids, action, actor.id if actor else None, *values
            )
            assert row is not None and row["ok"] and row["changed"] == len(post_ids), dict(
                row or {}
            )

        # Recorded by 0.1.0 on its own schema, before the upgrade.
        await by_previous("SQL_BATCH_HIDE_BY_USER", ids[:2], "hide", None, True)
        await by_previous("SQL_BATCH_TAGS", ids[2:4], "tags", None, ["c"], ["a"])
        await by_previous("SQL_BATCH_LICENSE", ids[4:5], "license", None, nd)
        await by_previous("SQL_BATCH_HIDE_BY_MOD", ids[5:6], "hide", mod, True)
        # The new release's migrations, then 0.1.0's servers still serving during the roll.
        async with connected(old_db) as conn:
            applied = await apply_migrations(conn)
            assert "0019_undo_per_actor" in applied, applied
        await by_previous("SQL_BATCH_DELETE_BY_USER", ids[6:7], "delete", None)
        await by_previous("SQL_BATCH_RESTORE_BY_MOD", ids[7:8], "restore", mod)
        assert [tuple(r) for r in await pool.fetch(_STATE)] != before

        # The new release serves: every one of those actions is listed with its undo link, and
        # undone (newest first), each post is as it was.
        app = create_app(direct(settings, old_db))
        client = await aiohttp_client(app)
        links = []
        for user, query, count in ((owner, "", 4), (mod, f"?target_sqid={owner.sqid}", 2)):
            resp = await client.get(f"/api/pmd/actions{query}", headers=user.auth)
            assert resp.status == 200, await resp.text()
            items = [i for i in (await resp.json())["items"] if i["by_you"]]
            assert len(items) == count and all(i["undo"] for i in items), items
            links += [(i["created_at"], user, i["undo"]) for i in items]
        for _, user, link in sorted(links, key=lambda x: x[0], reverse=True):
            resp = await client.post(link, headers=user.auth)
            assert resp.status == 200, await resp.text()
            body = await resp.json()
            assert body["affected_count"] in (1, 2) and body["left_post_ids"] == [], body
        assert [tuple(r) for r in await pool.fetch(_STATE)] == before
        marks = await pool.fetch("SELECT post_id, deleted_by FROM moderator_deletions")
        assert [tuple(m) for m in marks] == [(ids[7], mod.id)]
        assert await pool.fetchval("SELECT count(*) FROM bulk_action_posts") == 0

        # One more of 0.1.0's, whose history is then gone (a later release dropped its table):
        # its undo says so, 410, rather than failing.
        await by_previous("SQL_BATCH_HIDE_BY_USER", ids[:1], "hide", None, True)
        await pool.execute("DELETE FROM bulk_action_posts")
        resp = await client.get("/api/pmd/actions", headers=owner.auth)
        fresh = [i for i in (await resp.json())["items"] if i["undo"]]
        assert len(fresh) == 1, fresh
        resp = await client.post(fresh[0]["undo"], headers=owner.auth)
        assert resp.status == 410, await resp.text()
        assert (await resp.json())["details"]["reason"] == "undo_history_missing"
        assert await pool.fetchval("SELECT hidden_by_user FROM posts WHERE id = $1", ids[0])
    finally:
        await pool.close()
