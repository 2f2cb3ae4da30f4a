"""The previous release (c41ab5d) beside this one on a schema this one migrated, as in a rolling
upgrade: its statements on the events, copied below from that release, keep working on the
table's old name; its listeners hear every event, and ours every event of its trigger
functions, which its migration runner puts back (their files differ from ours, so the runner
applies them again: `tests/previous_release/` holds that release's `migrations/repeatable/`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pmd_service.core.migrate import apply_migrations, discover
from pmd_service.sse.hub import CHANNEL, SQL_EVENTS_AFTER
from support.stack import connected, create_database, drop_database, eventually

PREVIOUS = Path(__file__).resolve().parents[1] / "previous_release"
# That release's migrations: 0001-0012, unchanged since.
PREVIOUS_LAST_MIGRATION = 12

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
OLD_WATERMARK = "SELECT coalesce(max(id), 0) AS watermark FROM bdr_events"
OLD_PURGE_COUNT = (
    "SELECT count(*) FROM bdr_events WHERE created_at < $1::timestamptz - interval '1 day'"
)
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


def previous_release_folder(tmp_path: Path) -> Path:
    """The migrations folder of the previous release: what its runner applies."""
    folder = tmp_path / "previous"
    (folder / "repeatable").mkdir(parents=True)
    for m in discover():
        if m.version <= PREVIOUS_LAST_MIGRATION:
            (folder / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    for sql in PREVIOUS.glob("*.sql"):
        (folder / "repeatable" / sql.name).write_text(sql.read_text())
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
        await self.talk.execute(f"SELECT pg_notify('{OLD_CHANNEL}', '{MARK}'), "
                                f"pg_notify('{CHANNEL}', '{MARK}')")  # fmt: skip

        async def marked() -> bool:
            return all(MARK in heard for heard in self.heard.values())

        await eventually(marked, what=f"the marks, having heard {self.heard}")
        return {channel: heard[:-1] for channel, heard in self.heard.items()}


async def test_the_previous_release_reads_deletes_and_hears_the_events(
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
        bdr_ids: list[uuid.UUID] = []

        async def request_bdr() -> None:
            bdr_ids.append(await conn.fetchval(
                "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count)"
                " VALUES ($1, '{1}', 1) RETURNING id", user_id,
            ))  # fmt: skip

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

        async def progress() -> None:
            await conn.execute(
                "UPDATE batch_download_requests SET status = 'processing', progress_done = 1"
                " WHERE user_id = $1", user_id,
            )  # fmt: skip

        async def newest(n: int) -> list[str]:
            """The last `n` event ids, oldest first."""
            ids = await conn.fetch("SELECT id FROM stream_events ORDER BY id DESC LIMIT $1", n)
            return [str(r["id"]) for r in reversed(ids)]

        # Statements that write events (with how many): each rings both channels once, with
        # the last id it wrote.
        writes = ((request_bdr, 1), (progress, 1), (export_and_posts, 2))

        # This release's functions.
        for write, statements in ((request_bdr, 1), *writes):
            heard = await ears.of(write)
            rung = await newest(statements)
            assert heard == {OLD_CHANNEL: rung, CHANNEL: rung}

        # What the previous release reads through `bdr_events` is the table, ids and all.
        rows = await conn.fetch(OLD_EVENTS_AFTER, 0, 100)
        ours = await conn.fetch(SQL_EVENTS_AFTER, 0, 100)
        assert [(r["id"], r["payload"]) for r in rows] == [(r["id"], r["payload"]) for r in ours]
        # Two requests, their progress, an export and a posts event (filed as 0015 does).
        assert len(rows) == 6 and rows[-1]["user_id"] == -user_id
        assert await conn.fetchval(OLD_LAST_EVENT) == rows[-1]["id"]
        assert await conn.fetchval(OLD_WATERMARK) == rows[-1]["id"]
        assert await conn.fetchval(OLD_EVENT_KNOWN, rows[0]["id"])
        missed = await conn.fetch(OLD_MISSED, user_id, rows[0]["id"], 100)
        assert [r["id"] for r in missed] == [r["id"] for r in rows[1:4]]
        assert await conn.fetch(
            "SELECT bdr_id FROM bdr_events WHERE bdr_id = ANY($1::uuid[]) ORDER BY id", bdr_ids
        ) == await conn.fetch(
            "SELECT subject_id AS bdr_id FROM stream_events WHERE subject_id = ANY($1::uuid[])"
            " ORDER BY id", bdr_ids,
        )  # fmt: skip

        # The previous release's runner starts (a server of it restarted mid-upgrade): it puts
        # its own functions back, which write through `bdr_events` and ring its channel.
        applied = await apply_migrations(conn, previous_release_folder(tmp_path))
        assert applied == ["repeatable bdr_events", "repeatable export_events"]
        (before,) = await newest(1)
        for write, statements in writes:
            heard = await ears.of(write)
            rung = await newest(statements)
            assert heard == {OLD_CHANNEL: rung, CHANNEL: rung}
        after = await conn.fetch(OLD_EVENTS_AFTER, int(before), 100)
        assert [r["id"] for r in after] == [
            r["id"] for r in await conn.fetch(SQL_EVENTS_AFTER, int(before), 100)
        ]
        # The new request, its progress (the others had theirs), the export, the posts.
        assert ['"processing"' in r["payload"] for r in after] == [False, True, False, False]

        # This release's runner puts ours back; the previous release's cleanup purges the table.
        assert await apply_migrations(conn) == [
            "repeatable bdr_events", "repeatable export_events",
        ]  # fmt: skip
        for write, statements in writes:
            heard = await ears.of(write)
            rung = await newest(statements)
            assert heard == {OLD_CHANNEL: rung, CHANNEL: rung}
        later = datetime.now(UTC) + timedelta(days=2)
        count = await conn.fetchval("SELECT count(*) FROM stream_events")
        assert await conn.fetchval(OLD_PURGE_COUNT, later) == count
        assert await conn.execute(OLD_PURGE, later) == f"DELETE {count}"
        assert await conn.fetchval("SELECT count(*) FROM stream_events") == 0
