"""Which of the host's revisions `check-host` finds, and what an older host lacks: from the
host's alembic_version when the role may read it, else from its columns; and the service at
work on the host's tables as they were at commit 4350ab8 (its last head the service was fitted
to), without the columns the host added since."""

from __future__ import annotations

import io
import subprocess
import zipfile
from typing import Any

import asyncpg

from pmd_service.host.hostcheck import HOST_HEAD, NEWER_COLUMNS, check_host
from tests.helpers import SECRET, announced, run_python, run_worker
from tests.host_revisions import AT_4350AB8, BesideHost, beside_host_at

LACKING_AT_4350AB8 = [
    "users.webauthn_user_handle",
    "posts.promoted_at",
    "users.mention_policy",
    "posts.listed_at",
    "posts.pending_listing",
    "users.locale",
]


async def test_the_newest_head_is_named(host: asyncpg.Connection) -> None:
    report = await check_host(host, "public")
    assert report.head is not None
    assert report.head.recorded == [HOST_HEAD.revision] == ["d3e4f5a6b7c8"]
    assert report.head.lacking == []
    assert report.column_problems == []
    text = report.render()
    assert "  alembic_version: d3e4f5a6b7c8 (the newest head)" in text
    assert "  its columns show: d3e4f5a6b7c8 (every column of the newest head)" in text
    assert "still works" not in text


async def test_a_host_at_4350ab8_is_named_with_what_it_lacks(host: asyncpg.Connection) -> None:
    await host.execute(AT_4350AB8.read_text("utf-8"))
    report = await check_host(host, "public")
    assert report.head is not None
    assert report.head.recorded == ["d4e5f6a7b8c9"]
    assert report.head.from_columns is None
    assert report.head.lacking == LACKING_AT_4350AB8
    assert set(LACKING_AT_4350AB8) == NEWER_COLUMNS
    # An older host is a note, never a column that does not fit.
    assert report.column_problems == []
    lines = report.render().splitlines()
    assert "  alembic_version: d4e5f6a7b8c9 (2026-08-14)" in lines
    assert (
        "  its columns show: host at 4350ab8 (d4e5f6a7b8c9) or older: no "
        + ", ".join(LACKING_AT_4350AB8)
    ) in lines
    (works,) = [line for line in lines if "the service still works" in line]
    assert "emails go out in English (no users.locale)" in works
    assert "(passkeys, the promoted feed's order, who may mention whom, the feeds' order" in works


async def test_a_newer_column_the_service_reads_may_be_missing_never_misshapen(
    host: asyncpg.Connection,
) -> None:
    """A column of a later revision that the service reads (users.locale, for emails) is no
    column problem on an older host, which lacks it; a wrong type of it is one."""
    await host.execute("ALTER TABLE users ALTER COLUMN locale TYPE int USING NULL")
    report = await check_host(host, "public")
    assert report.column_problems == ["users.locale: type integer, expected varchar or text"]
    await host.execute(AT_4350AB8.read_text("utf-8"))
    assert (await check_host(host, "public")).column_problems == []
    await host.execute("ALTER TABLE posts DROP COLUMN title")  # one the service needs on any
    assert (await check_host(host, "public")).column_problems[0].startswith("posts.title: missing")


async def test_from_the_columns_when_there_is_no_alembic_version(
    host: asyncpg.Connection,
) -> None:
    await host.execute("DROP TABLE alembic_version; ALTER TABLE users DROP COLUMN locale")
    report = await check_host(host, "public")
    assert report.head is not None and report.head.recorded is None
    assert report.head.from_columns is not None
    assert report.head.from_columns.revision == "a8b9c0d1e2f3"
    text = report.render()
    assert "  alembic_version: no such table; from the columns instead" in text
    assert "  its columns show: host at a8b9c0d1e2f3: no users.locale" in text
    # Revisions that add no column here cannot be told apart from the one before them.
    await host.execute(
        "ALTER TABLE users DROP COLUMN mention_policy; ALTER TABLE posts DROP COLUMN promoted_at;"
        "ALTER TABLE posts DROP COLUMN listed_at; ALTER TABLE posts DROP COLUMN pending_listing"
    )
    text = (await check_host(host, "public")).render()
    assert "  its columns show: host at a1b2c3d4e5f6 to c3d4e5f6a7b8: no posts.promoted_at" in text


async def test_a_revision_this_release_does_not_know(host: asyncpg.Connection) -> None:
    await host.execute("UPDATE alembic_version SET version_num = 'f00dcafe0001'")
    text = (await check_host(host, "public")).render()
    assert "  alembic_version: f00dcafe0001 (not a revision this release lists: older than " in text
    assert "  its columns show: d3e4f5a6b7c8 (every column of the newest head)" in text


def _cli(url: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "JWT_SECRET_KEY": SECRET,
        "AUTO_MIGRATE": "false",
    }
    return run_python(
        "-m",
        "pmd_service",
        "check-host",
        env=env | {k: v for k, v in __import__("os").environ.items() if k not in env},
    )


async def test_the_cli_as_the_service_role_on_an_older_host(
    host: asyncpg.Connection, host_role_url: str, redis_url: str
) -> None:
    """The service's role may not read alembic_version (it needs no right there): the columns
    tell. Once the indexes are made, an older host fits: exit 0."""
    await host.execute(AT_4350AB8.read_text("utf-8"))
    done = _cli(host_role_url, redis_url)
    for statement in [line for line in done.stdout.splitlines() if line.startswith("CREATE")]:
        await host.execute(statement)
    done = _cli(host_role_url, redis_url)
    assert done.returncode == 0, done
    assert "  alembic_version: not readable by this role" in done.stdout
    assert "  its columns show: host at 4350ab8 (d4e5f6a7b8c9) or older: no " in done.stdout
    assert "emails go out in English (no users.locale)" in done.stdout


older = beside_host_at(older=True)


async def _ok(older: BesideHost, auth: dict[str, str], path: str, body: Any) -> Any:
    resp = await older.client.post(path, json=body, headers=auth)
    assert resp.status in (200, 202), (path, body, await resp.text())
    return await resp.json()


async def test_the_service_works_on_a_host_at_4350ab8(older: BesideHost) -> None:
    columns = await older.pool.fetch(
        "SELECT table_name || '.' || column_name AS c FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name IN ('posts', 'users')"
    )
    assert not NEWER_COLUMNS & {r["c"] for r in columns}  # shaped as at 4350ab8 indeed
    client, site = older.client, older.site
    owner = await site.user("painter", ["user"])
    mod = await site.user("keeper", ["user", "moderator"])
    posts = [await site.post(owner, n, legacy=n % 2 == 0) for n in range(4)]
    ids = [p.id for p in posts]

    listed = await (await client.get("/api/pmd/posts", headers=owner.auth)).json()
    assert [i["id"] for i in listed["items"]] == ids
    for action in ("hide", "unhide", "delete", "restore"):
        answer = await _ok(
            older, owner.auth, "/api/pmd/action", {"action": action, "post_ids": ids[:2]}
        )
        assert answer["affected_count"] == 2, (action, answer)
    answer = await _ok(
        older,
        owner.auth,
        "/api/pmd/action",
        {"action": "tags", "filter": {}, "expect_count": 4, "add": ["old"]},
    )
    undo = await client.post(answer["undo"], headers=owner.auth)
    assert undo.status == 200, await undo.text()
    answer = await _ok(
        older,
        mod.auth,
        f"/api/pmd/action?target_sqid={owner.sqid}",
        {"action": "hide", "post_ids": ids[3:]},
    )
    assert answer["affected_count"] == 1

    item = await _ok(older, owner.auth, "/api/pmd/bdr", {"post_ids": ids, "send_email": True})
    await announced(client, item["id"])
    await run_worker(older.settings)
    ready = await (await client.get(f"/api/pmd/bdr/{item['id']}", headers=owner.auth)).json()
    assert ready["status"] == "ready", ready
    download = await client.get(ready["download_url"], headers=owner.auth)
    assert download.status == 200
    archive = zipfile.ZipFile(io.BytesIO(await download.read()))
    for post in posts:
        assert archive.read(f"artworks/{post.sqid}.png") == post.data
