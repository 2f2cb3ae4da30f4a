"""The previous release (0.1.0, commit c41ab5d) beside this one on a schema this one migrated, as
in a rolling upgrade. Its statements on the events, copied below from that release, read what
this release reads through `stream_events`; its listeners hear every event, ours too, whichever
release's trigger functions wrote it: its migration runner puts its own back, since their files
differ from ours (its `migrations/repeatable/`, read from git at its tag or its commit).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pmd_service.core.migrate import apply_migrations, discover
from pmd_service.sse.hub import CHANNEL, SQL_EVENTS_AFTER
from pmd_service.sse.replay import SQL_PURGE_EVENTS
from runs.cluster.upgrade import RELEASES
from support.migration_check import read_record
from support.stack import connected, create_database, drop_database, eventually
from tests.helpers import CHECKOUT

PREVIOUS_VERSION, PREVIOUS_LAST_MIGRATION = "0.1.0", 12
PREVIOUS_TAG = f"v{PREVIOUS_VERSION}"

# That release's statements on the events: sse/hub.py, sse/replay.py and upkeep/cleanup.py.
OLD_CHANNEL = "pmd_bdr_events"
OLD_LAST_EVENT = "SELECT coalesce(max(id), 0) FROM bdr_events"
OLD_EVENTS_AFTER = """
SELECT id, user_id, payload::text AS payload FROM bdr_events
WHERE id > $1 ORDER BY id LIMIT $2
"""
OLD_EVENT_KNOWN = "SELECT EXISTS (SELECT 1 FROM bdr_events WHERE id = $1)"
OLD_MISSED = """
SELECT id, payload::text AS payload FROM bdr_events
WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3
"""
OLD_PURGE = "DELETE FROM bdr_events WHERE created_at < $1::timestamptz - interval '1 day'"

MARK = "mark"


@pytest.fixture
async def empty_db(admin_database_url: str) -> AsyncIterator[str]:
    name = f"pmd_prev_{uuid.uuid4().hex[:8]}"
    url = await create_database(admin_database_url, name)
    try:
        yield url
    finally:
        await drop_database(admin_database_url, name)


def test_the_files_are_the_previous_release_s() -> None:
    """A new release recorded in migrations/RELEASED is the one to read here instead."""
    released = read_record(CHECKOUT)
    assert (released.version, released.last) == (PREVIOUS_VERSION, PREVIOUS_LAST_MIGRATION)


def git(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        pytest.fail("git is needed: the previous release's files are read from this repository")


def previous_release_rev() -> str:
    """The previous release's tag, or in a clone without tags its commit."""
    revisions = [rev for rev in (PREVIOUS_TAG, RELEASES.get(PREVIOUS_TAG)) if rev]
    for rev in revisions:
        if git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode == 0:
            return rev
    pytest.fail(f"none of {revisions} in the git repository of {CHECKOUT} (a shallow clone?)")


def previous_release_folder(tmp_path: Path) -> Path:
    """The migrations folder of the previous release: what its runner applies."""
    folder = tmp_path / "previous"
    (folder / "repeatable").mkdir(parents=True)
    for m in discover():
        if m.version <= PREVIOUS_LAST_MIGRATION:
            (folder / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    repeatable = f"{previous_release_rev()}:migrations/repeatable"
    for name in git("ls-tree", "--name-only", repeatable).stdout.split():
        shown = git("show", f"{repeatable}/{name}")
        assert shown.returncode == 0, shown.stderr
        (folder / "repeatable" / name).write_text(shown.stdout)
    return folder


class Ears:
    """A LISTEN connection on each release's channel, and what each heard."""

    def __init__(self, talk: asyncpg.Connection) -> None:
        self.talk = talk
        self.heard: dict[str, list[str]] = {OLD_CHANNEL: [], CHANNEL: []}

    def hear(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        self.heard[channel].append(str(payload))

    async def of(self, write: Callable[[], Awaitable[Any]]) -> dict[str, list[str]]:
        """What each channel heard of what `write` committed: a mark sent after it arrives
        after every notification of an earlier commit."""
        for heard in self.heard.values():
            heard.clear()
        await write()
        await self.talk.execute(
            f"SELECT pg_notify('{OLD_CHANNEL}', '{MARK}'), pg_notify('{CHANNEL}', '{MARK}')"
        )

        async def marked() -> bool:
            return all(MARK in heard for heard in self.heard.values())

        await eventually(marked, what=f"the marks, having heard {self.heard}")
        return {channel: heard[:-1] for channel, heard in self.heard.items()}


async def test_the_previous_release_reads_purges_and_hears_the_events(
    empty_db: str, tmp_path: Path
) -> None:
    async with (
        connected(empty_db) as conn,
        connected(empty_db) as old_ear,
        connected(empty_db) as new_ear,
    ):
        await apply_migrations(conn, with_host_tables=True)
        ears = Ears(conn)
        await old_ear.add_listener(OLD_CHANNEL, ears.hear)
        await new_ear.add_listener(CHANNEL, ears.hear)
        user_id = await conn.fetchval(
            "INSERT INTO users (handle, email) VALUES ('prev', 'prev@x') RETURNING id"
        )

        async def request_bdr() -> None:
            await conn.execute(
                "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count)"
                " VALUES ($1, '{1}', 1)",
                user_id,
            )

        async def progress() -> None:
            await conn.execute(
                "UPDATE batch_download_requests SET status = 'processing', progress_done = 1"
                " WHERE user_id = $1",
                user_id,
            )

        async def export_and_posts() -> None:
            async with conn.transaction():
                # One running export a user: each by a user of its own.
                await conn.execute(
                    "WITH u AS (INSERT INTO users (handle, email) SELECT h, h || '@x' FROM"
                    " (SELECT 'exp' || gen_random_uuid() AS h) AS n RETURNING id)"
                    " INSERT INTO exports (user_id, part_bytes) SELECT id, 1000 FROM u"
                )
                await conn.fetchval(
                    "SELECT pmd_posts_changed($1, 'hide', '{1, 2}', gen_random_uuid(), 10)",
                    user_id,
                )

        async def newest(n: int) -> list[str]:
            """The last `n` event ids, oldest first."""
            ids = await conn.fetch("SELECT id FROM stream_events ORDER BY id DESC LIMIT $1", n)
            return [str(r["id"]) for r in reversed(ids)]

        # Statements that write events, and how many: each rings both channels once, with the
        # last id it wrote.
        writes = ((request_bdr, 1), (progress, 1), (export_and_posts, 2))

        async def each_heard_on_both() -> None:
            for write, statements in writes:
                heard = await ears.of(write)
                rung = await newest(statements)
                assert heard == {OLD_CHANNEL: rung, CHANNEL: rung}, write.__name__

        # This release's trigger functions.
        await each_heard_on_both()
        rows = await conn.fetch(OLD_EVENTS_AFTER, 0, 100)
        ours = await conn.fetch(SQL_EVENTS_AFTER, 0, 100)
        assert [(r["id"], r["payload"]) for r in rows] == [(r["id"], r["payload"]) for r in ours]
        assert len(rows) == 4 and rows[-1]["user_id"] == -user_id  # posts: filed as 0015 does
        assert await conn.fetchval(OLD_LAST_EVENT) == rows[-1]["id"]
        assert await conn.fetchval(OLD_EVENT_KNOWN, rows[0]["id"])
        missed = await conn.fetch(OLD_MISSED, user_id, rows[0]["id"], 100)
        assert [r["id"] for r in missed] == [rows[1]["id"]]
        subjects = await conn.fetch("SELECT subject_id FROM stream_events ORDER BY id")
        assert [r["subject_id"] for r in subjects] == [
            r["bdr_id"] for r in await conn.fetch("SELECT bdr_id FROM bdr_events ORDER BY id")
        ]

        # The previous release's runner starts (a server of it restarted mid-upgrade): it puts
        # its functions back.
        applied = await apply_migrations(conn, previous_release_folder(tmp_path))
        assert applied == ["repeatable bdr_events", "repeatable export_events"]
        await each_heard_on_both()

        # This release's runner puts ours back; each release's purge empties the table.
        assert await apply_migrations(conn) == [
            "repeatable bdr_events",
            "repeatable export_events",
        ]
        await each_heard_on_both()
        # Whichever release's functions wrote a row, it names its kind and audience (0025).
        labels = await conn.fetch("SELECT kind, audience FROM stream_events ORDER BY id")
        each = [("bdr", "watchers")] * 2 + [("export", "owner"), ("posts", "watchers")]
        assert [(r["kind"], r["audience"]) for r in labels] == each * 3
        later = datetime.now(UTC) + timedelta(days=2)
        count = await conn.fetchval("SELECT count(*) FROM stream_events")
        assert count == 12 and await conn.execute(OLD_PURGE, later) == f"DELETE {count}"
        await request_bdr()
        assert await conn.execute(SQL_PURGE_EVENTS, later) == "DELETE 1"
        assert await conn.fetchval("SELECT count(*) FROM bdr_events") == 0
