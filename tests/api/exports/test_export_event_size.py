"""An export's events stay a few KB whatever the export (migration 0008): counts for the lists
that grow with it, at most 12 parts; the whole item stays in `GET /api/pmd/exports/{id}`.

An attack review had one account with thousands of skipped artworks write 1.2 GB into
`stream_events` (one event per progress step, each carrying every skipped entry and every part)
and grow every server process past a GB."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import asyncpg
import msgspec

from pmd_service.features.exports.events import KIND
from pmd_service.features.exports.schemas import EVENT_PARTS
from pmd_service.features.registry import EVENT_KINDS as KINDS
from support.seeding import Factory, UserRow
from support.sse import SSE, open_stream
from tests.exports import plan_parts

LIMIT = 8 * 1024  # every event, as stored and as framed
PARTS, SKIPPED = 40, 3000


def skipped_entries(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {"post_id": 10**8 + i, "public_sqid": f"Sq{i:014d}", "reason": "file_missing"}
        for i in range(start, start + n)
    ]


async def a_large_export(pool: asyncpg.Pool, owner: UserRow) -> uuid.UUID:
    """An export as the worker leaves it after planning 40 parts and publishing them one by
    one (SQL_AFTER_PART's writes), each adding 75 skipped artworks: 3,000 in all."""
    export_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO exports (id, user_id, user_sqid, status, part_bytes) "
        "VALUES ($1, $2, $3, 'processing', 1048576)",
        export_id,
        owner.id,
        owner.sqid,
    )
    await plan_parts(pool, export_id, PARTS, 100, 1000)
    await pool.execute(
        "UPDATE exports SET artwork_count = $2, parts_version = parts_version + 1 WHERE id = $1",
        export_id,
        PARTS * 100,
    )
    per_part = SKIPPED // PARTS
    for n in range(1, PARTS + 1):
        # SQL_PART_STARTED, then SQL_TOUCH: the part's start reaches the stream.
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE export_parts SET status = 'processing' WHERE export_id = $1 AND number = $2",
                export_id,
                n,
            )
            await conn.execute(
                "UPDATE exports SET parts_version = parts_version + 1 WHERE id = $1", export_id
            )
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE export_parts SET status = 'ready', file_size_bytes = 1048000, "
                "sha256 = repeat('ab', 32), completed_at = now() "
                "WHERE export_id = $1 AND number = $2",
                export_id,
                n,
            )
            await conn.execute(
                "UPDATE exports SET progress_done = $2, total_bytes = total_bytes + 1048000, "
                "skipped = skipped || $3::jsonb, parts_version = parts_version + 1 WHERE id = $1",
                export_id,
                n * 100,
                skipped_entries(n * per_part, per_part),
            )
    await pool.execute(
        "UPDATE exports SET status = 'failed', error_message = repeat(chr(1), 500), "
        "completed_at = now() WHERE id = $1",
        export_id,
    )
    return export_id


async def test_every_event_of_a_large_export_is_small_and_the_item_stays_whole(
    pool: asyncpg.Pool, factory: Factory, app: Any, aiohttp_client: Any
) -> None:
    owner = await factory.user()
    export_id = await a_large_export(pool, owner)
    rows = await pool.fetch(
        "SELECT id, payload::text AS payload FROM stream_events WHERE subject_id = $1 ORDER BY id",
        export_id,
    )
    assert len(rows) > PARTS  # planned, every part, every start, the end
    for row in rows:
        assert len(row["payload"].encode()) < LIMIT, row["id"]
        frame = KINDS.frame(KIND, row["payload"], row["id"])
        assert len(frame) < LIMIT, row["id"]
    last = msgspec.json.decode(KINDS.frame(KIND, rows[-1]["payload"], 1).split(b"data: ")[1])
    assert last["skipped_count"] == SKIPPED and "skipped" not in last
    assert last["parts_count"] == PARTS and len(last["parts"]) == EVENT_PARTS
    # The newest ready parts, in number order; each with its link and digest.
    assert [p["number"] for p in last["parts"]] == list(range(PARTS - EVENT_PARTS + 1, PARTS + 1))
    assert all(p["download_url"] and p["sha256"] == "ab" * 32 for p in last["parts"])
    # While a part is built, its start's event names it beside the newest ready ones.
    events = [
        msgspec.json.decode(KINDS.frame(KIND, r["payload"], 1).split(b"data: ")[1]) for r in rows
    ]
    building = [[p["number"] for p in e["parts"] if p["status"] == "processing"] for e in events]
    assert [b for b in building if b] == [[n] for n in range(1, PARTS + 1)]

    # The item itself is whole.
    client = await aiohttp_client(app)
    resp = await client.get(f"/api/pmd/exports/{export_id}", headers=owner.auth)
    assert resp.status == 200, await resp.text()
    item = await resp.json()
    assert len(item["skipped"]) == item["skipped_count"] == SKIPPED
    assert len(item["parts"]) == item["parts_count"] == PARTS

    # The stream's snapshot carries the export the same small way.
    session: aiohttp.ClientSession = client.session
    async with open_stream(session, str(client.make_url(SSE)), owner.auth) as stream:
        opening = await stream.opening()
    exports = [m for m in opening if m.event == "export_update"]
    assert len(exports) == 1
    assert len((exports[0].data or "").encode()) < LIMIT
    assert exports[0].json()["skipped_count"] == SKIPPED


def test_an_event_written_before_0008_is_framed_as_small() -> None:
    """A whole `export_payload` still in the table from before the migration."""
    export_id = uuid.uuid4()
    parts = [
        {
            "number": n,
            "status": "ready" if n < 300 else "pending",
            "artwork_count": 9,
            "file_size_bytes": 10**9,
            "sha256": "cd" * 32,
        }
        for n in range(1, 501)
    ]
    payload = {
        "kind": "export",
        "id": str(export_id),
        "status": "processing",
        "created_at": "2026-11-25T10:00:00Z",
        "started_at": None,
        "completed_at": None,
        "expires_at": None,
        "part_bytes": 10**9,
        "include_comments": True,
        "include_reactions": True,
        "send_email": False,
        "artwork_count": 5000,
        "progress_done": 2700,
        "total_bytes": 3 * 10**11,
        "skipped": skipped_entries(0, 5000),
        "error_message": None,
        "user_sqid": "Uk",
        "parts": parts,
    }
    frame = KINDS.frame(KIND, msgspec.json.encode(payload).decode(), 7)
    assert len(frame) < LIMIT
    data = msgspec.json.decode(frame.split(b"data: ")[1])
    assert data["skipped_count"] == 5000 and data["parts_count"] == 500
    assert [p["number"] for p in data["parts"]] == [*range(288, 300)]
