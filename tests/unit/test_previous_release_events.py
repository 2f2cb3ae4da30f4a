"""The previous release (0.2.0, commit b71c623) beside this one on a schema this one migrated, as
in a rolling upgrade. Its statements on the events, copied below from that release, read what
this release writes; both hear every event on the one doorbell the table rings, whichever
release's trigger functions wrote it: its migration runner puts its own back, since their files
differ from ours (its `migrations/repeatable/`, read from git at its tag or its commit).
"""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pmd_service.core.migrate import apply_migrations, discover
from pmd_service.sse.hub import CHANNEL, SQL_EVENTS_AFTER
from pmd_service.sse.replay import SQL_PURGE_EVENTS
from support.migration_check import read_record
from support.release import RELEASES
from support.stack import connected, eventually
from tests.helpers import CHECKOUT, scratch_database

PREVIOUS_VERSION, PREVIOUS_LAST_MIGRATION = "0.2.0", 18
PREVIOUS_TAG = f"v{PREVIOUS_VERSION}"

# That release's statements on the events: sse/hub.py and sse/replay.py (the cleanup's purge).
OLD_LAST_EVENT = "SELECT coalesce(max(id), 0) FROM stream_events"
OLD_EVENTS_AFTER = """
SELECT id, abs(user_id) AS user_id, payload::text AS payload FROM stream_events
WHERE id > $1 ORDER BY id LIMIT $2
"""
OLD_EVENT_KNOWN = "SELECT EXISTS (SELECT 1 FROM stream_events WHERE id = $1)"
OLD_MISSED = """
SELECT id, payload::text AS payload FROM stream_events
WHERE user_id IN ($1::int, -$1::int) AND id > $2 ORDER BY id LIMIT $3
"""
OLD_PURGE = "DELETE FROM stream_events WHERE created_at < $1::timestamptz - interval '1 day'"

MARK = "mark"


empty_db = scratch_database("pmd_prev")


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


def previous_release_rev(version: str = PREVIOUS_VERSION) -> str:
    """A release's tag (the previous one's unless named), or in a clone without tags its
    commit."""
    tag = f"v{version}"
    revisions = [rev for rev in (tag, RELEASES.get(tag)) if rev]
    for rev in revisions:
        if git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode == 0:
            return rev
    pytest.fail(f"none of {revisions} in the git repository of {CHECKOUT} (a shallow clone?)")


def previous_release_folder(
    tmp_path: Path, version: str = PREVIOUS_VERSION, last: int = PREVIOUS_LAST_MIGRATION
) -> Path:
    """The migrations folder of a release (the previous one unless named), `last` its last
    migration: what its runner applies."""
    folder = tmp_path / f"release-{version}"
    (folder / "repeatable").mkdir(parents=True)
    for m in discover():
        if m.version <= last:
            (folder / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    repeatable = f"{previous_release_rev(version)}:migrations/repeatable"
    for name in git("ls-tree", "--name-only", repeatable).stdout.split():
        shown = git("show", f"{repeatable}/{name}")
        assert shown.returncode == 0, shown.stderr
        (folder / "repeatable" / name).write_text(shown.stdout)
    return folder


class Ears:
    """A LISTEN connection on the stream's doorbell, and what it heard."""

    def __init__(self, talk: asyncpg.Connection) -> None:
        self.talk = talk
        self.heard: list[str] = []

    def hear(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.heard.append(str(payload))

    async def of(self, write: Callable[[], Awaitable[Any]]) -> list[str]:
        """What the doorbell rang of what `write` committed: a mark sent after it arrives after
        every notification of an earlier commit."""
        self.heard.clear()
        await write()
        await self.talk.execute(f"SELECT pg_notify('{CHANNEL}', '{MARK}')")

        async def marked() -> bool:
            return MARK in self.heard

        await eventually(marked, what=f"the mark, having heard {self.heard}")
        return self.heard[:-1]


async def test_the_previous_release_reads_purges_and_hears_the_events(
    empty_db: str, tmp_path: Path
) -> None:
    async with connected(empty_db) as conn, connected(empty_db) as ear:
        await apply_migrations(conn, with_host_tables=True)
        # The contract (0029): the table has the name 0.2.0 reads, no view is left of it.
        kinds = await conn.fetch(
            "SELECT relname, relkind FROM pg_class WHERE relname IN ('bdr_events', 'stream_events')"
        )
        assert [(r["relname"], r["relkind"]) for r in kinds] == [("stream_events", b"r")]
        ears = Ears(conn)
        await ear.add_listener(CHANNEL, ears.hear)
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

        # Statements that write events, and how many: each rings the doorbell once, with the
        # last id it wrote.
        writes = ((request_bdr, 1), (progress, 1), (export_and_posts, 2))

        async def each_heard_once() -> None:
            for write, statements in writes:
                assert await ears.of(write) == await newest(statements), write.__name__

        # This release's trigger functions.
        await each_heard_once()
        rows = await conn.fetch(OLD_EVENTS_AFTER, 0, 100)
        ours = await conn.fetch(SQL_EVENTS_AFTER, 0, 100)
        assert [tuple(r) for r in rows] == [(r["id"], r["user_id"], r["payload"]) for r in ours]
        assert len(rows) == 4 and rows[-1]["user_id"] == user_id  # posts: the owner's own id
        assert await conn.fetchval(OLD_LAST_EVENT) == rows[-1]["id"]
        assert await conn.fetchval(OLD_EVENT_KNOWN, rows[0]["id"])
        missed = await conn.fetch(OLD_MISSED, user_id, rows[0]["id"], 100)
        assert [r["id"] for r in missed] == [rows[1]["id"], rows[3]["id"]]

        # The previous release's runner starts (a server of it restarted mid-upgrade): it puts
        # its functions back, which write the renamed table as they wrote the view.
        applied = await apply_migrations(conn, previous_release_folder(tmp_path))
        assert applied == ["repeatable bdr_events", "repeatable export_events"]
        await each_heard_once()

        # This release's runner puts ours back; each release's purge empties the table.
        assert await apply_migrations(conn) == [
            "repeatable bdr_events",
            "repeatable export_events",
        ]
        await each_heard_once()
        # Whichever release's functions wrote a row, it names its kind and audience (0025).
        labels = await conn.fetch("SELECT kind, audience FROM stream_events ORDER BY id")
        each = [("bdr", "watchers")] * 2 + [("export", "owner"), ("posts", "watchers")]
        assert [(r["kind"], r["audience"]) for r in labels] == each * 3
        later = datetime.now(UTC) + timedelta(days=2)
        count = await conn.fetchval("SELECT count(*) FROM stream_events")
        assert count == 12 and await conn.execute(OLD_PURGE, later) == f"DELETE {count}"
        await request_bdr()
        assert await conn.execute(*SQL_PURGE_EVENTS.bind({"clock": later})) == "DELETE 1"
        assert await conn.fetchval("SELECT count(*) FROM stream_events") == 0
