"""The event payloads have one definition each, beside their item (bdr/schemas.py ItemRow,
exports/schemas.py Payload): the functions that write them are generated from it
(`migrations/repeatable/`, re-created by the migration runner when they change)."""

from __future__ import annotations

import shutil
import uuid
from importlib.resources import as_file
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import msgspec

from pmd_service.core.migrate import MIGRATIONS, apply_migrations, discover
from pmd_service.core.payload_sql import Sql, build_object, watched
from pmd_service.features.bdr import event_sql as bdr_event_sql
from pmd_service.features.bdr.events import BDR_UPDATE
from pmd_service.features.bdr.schemas import ITEM_COLUMNS, ItemRow, bdr_item
from pmd_service.features.exports import event_sql as export_event_sql
from pmd_service.features.exports.events import EXPORT_UPDATE
from pmd_service.features.exports.schemas import EVENT_PARTS, Payload, export_item, export_update
from pmd_service.features.registry import EVENT_KINDS as KINDS
from pmd_service.sse import shapes
from support.stack import connected
from tests.exports import plan_parts

BDR_KEYS = set(ItemRow.__struct_encode_fields__)
EXPORT_KEYS = set(Payload.__struct_encode_fields__)
# Keys the hand-written bodies of 0011 never wrote: added to the definition since.
ADDED_SINCE = {"error_code", "layout"}


def test_the_generated_files_are_those_of_the_definitions() -> None:
    """Changing ItemRow or Payload without regenerating fails here (and says how to)."""
    with as_file(MIGRATIONS.joinpath("repeatable")) as folder:
        assert sorted(p.name for p in Path(folder).glob("*.sql")) == sorted(shapes.generated(KINDS))
        assert shapes.stale(Path(folder), KINDS) == [], "run: python -m pmd_service.web.event_kinds"


def test_a_large_definition_is_built_in_pieces() -> None:
    """jsonb_build_object takes at most 100 arguments: 60 fields make two calls, joined."""
    wide = msgspec.defstruct("Wide", [(f"f{i}", int) for i in range(60)])
    built = build_object(wide)
    assert built.count("jsonb_build_object(") == 2 and "|| jsonb_build_object(" in built
    assert all(f"'f{i}', r.f{i}" in built for i in range(60))


def test_watched_columns_are_those_the_expressions_read() -> None:
    assert watched(Payload)[:2] == ["id", "status"]
    got = set(watched(Payload))
    assert {"follows_id", "follows_started_at", "removed", "parts_version", "skipped"} <= got
    assert not {"kind", "follows_export_id", "changed_since", "removed_count"} & got


async def _user(conn: Any, handle: str) -> int:
    user_id: int = await conn.fetchval(
        "INSERT INTO users (handle, email) VALUES ($1, $2) RETURNING id", handle, f"{handle}@x"
    )
    return user_id


async def _bdr(conn: Any, user_id: int, artworks: int) -> uuid.UUID:
    """A pending BDR of `user_id`'s for `artworks` posts: its insert is an event."""
    bdr_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count)"
        " VALUES ($1, $2, $3) RETURNING id",
        user_id,
        list(range(1, artworks + 1)),
        artworks,
    )
    return bdr_id


async def _payloads(conn: Any, row_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT payload FROM stream_events WHERE subject_id = $1 ORDER BY id", row_id
    )
    return [
        msgspec.json.decode(r["payload"]) if isinstance(r["payload"], str) else r["payload"]
        for r in rows
    ]


async def test_every_payload_holds_exactly_its_struct(pool: asyncpg.Pool) -> None:
    """A key of a payload the struct lacks, or a field of the struct no payload carries,
    fails here: BDR events from an insert and an update, an export's events and its item."""
    user_id = await _user(pool, "shapes")
    bdr_id = await _bdr(pool, user_id, 2)
    await pool.execute(
        "UPDATE batch_download_requests SET status = 'processing', progress_done = 1 WHERE id = $1",
        bdr_id,
    )
    bdr_events = await _payloads(pool, bdr_id)
    assert [set(p) for p in bdr_events] == [BDR_KEYS, BDR_KEYS]
    # Every column an item is read from is in the payload, from an insert and an update alike.
    assert {c.strip() for c in ITEM_COLUMNS.split(",")} == BDR_KEYS
    items = [bdr_item(p) for p in bdr_events]
    assert [(i.status, i.progress.done) for i in items] == [("pending", 0), ("processing", 1)]

    export_id = await pool.fetchval(
        "INSERT INTO exports (user_id, part_bytes) VALUES ($1, 1000) RETURNING id", user_id
    )
    async with pool.acquire() as conn, conn.transaction():
        await plan_parts(conn, export_id, EVENT_PARTS + 2, 1, 10)
        await conn.execute(
            "UPDATE exports SET status = 'processing', parts_version = parts_version + 1,"
            " skipped = $2::text::jsonb WHERE id = $1",
            export_id,
            msgspec.json.encode(
                [{"post_id": 1, "public_sqid": None, "reason": "deleted"}]
            ).decode(),
        )
    export_events = await _payloads(pool, export_id)
    assert [set(p) for p in export_events] == [EXPORT_KEYS, EXPORT_KEYS]
    last = export_update(export_events[-1])
    assert (last.parts_count, len(last.parts), last.skipped_count) == (EVENT_PARTS + 2, 12, 1)
    assert export_events[-1]["skipped"] == []  # bounded: counts, not the lists
    item: str = await pool.fetchval(
        "SELECT export_payload(e)::text FROM exports e WHERE id = $1", export_id
    )
    assert set(msgspec.json.decode(item)) == EXPORT_KEYS
    whole = export_item(item)
    assert (len(whole.parts), len(whole.skipped)) == (EVENT_PARTS + 2, 1)
    # A heartbeat changes nothing an item shows: no event.
    await pool.execute("UPDATE exports SET heartbeat_at = now() WHERE id = $1", export_id)
    await pool.execute(
        "UPDATE batch_download_requests SET heartbeat_at = now() WHERE id = $1", bdr_id
    )
    assert len(await _payloads(pool, export_id)) == 2
    assert len(await _payloads(pool, bdr_id)) == 2


class _WiderBdr(ItemRow):
    colour: str = ""


class _WiderExport(Payload):
    colour: Annotated[str, Sql("upper(r.colour)")] = ""


async def test_a_field_added_to_a_definition_reaches_its_events(
    empty_db: str, tmp_path: Path
) -> None:
    """What a developer does for a new item field: a migration adding the column, the field
    on the struct (an expression beside it where it is not the column), the files regenerated.
    No function body is written; the runner applies the changed definitions with the
    migration, and leaves unchanged ones alone."""
    copy = tmp_path / "migrations"
    with as_file(MIGRATIONS) as shipped:
        shutil.copytree(shipped, copy)
    async with connected(empty_db) as conn:
        await apply_migrations(conn, copy, with_host_tables=True)
        version = discover(copy)[-1].version + 1
        (copy / f"{version:04d}_colour.sql").write_text(
            "ALTER TABLE batch_download_requests ADD COLUMN colour text NOT NULL DEFAULT 'teal';\n"
            "ALTER TABLE exports ADD COLUMN colour text NOT NULL DEFAULT 'teal';\n"
        )
        (copy / "repeatable" / "bdr_events.sql").write_text(
            bdr_event_sql.repeatable_sql(BDR_UPDATE, _WiderBdr)
        )
        (copy / "repeatable" / "export_events.sql").write_text(
            export_event_sql.repeatable_sql(EXPORT_UPDATE, _WiderExport)
        )
        assert await apply_migrations(conn, copy) == [
            f"{version:04d}_colour",
            "repeatable bdr_events",
            "repeatable export_events",
        ]
        when = await conn.fetch("SELECT * FROM pmd.schema_repeatables ORDER BY name")
        assert await apply_migrations(conn, copy) == []
        assert await conn.fetch("SELECT * FROM pmd.schema_repeatables ORDER BY name") == when

        await conn.execute("SET search_path = pmd, public")
        user_id = await _user(conn, "wider")
        bdr_id = await _bdr(conn, user_id, 1)
        # A change of the new field alone is a change of what the item shows.
        await conn.execute(
            "UPDATE batch_download_requests SET colour = 'plum' WHERE id = $1", bdr_id
        )
        events = await _payloads(conn, bdr_id)
        assert [p["colour"] for p in events] == ["teal", "plum"]
        assert [set(p) for p in events] == [BDR_KEYS | {"colour"}] * 2
        assert msgspec.convert(events[-1], _WiderBdr).colour == "plum"

        export_id = await conn.fetchval(
            "INSERT INTO exports (user_id, part_bytes) VALUES ($1, 1000) RETURNING id", user_id
        )
        await conn.execute("UPDATE exports SET colour = 'plum' WHERE id = $1", export_id)
        events = await _payloads(conn, export_id)
        assert [p["colour"] for p in events] == ["TEAL", "PLUM"]
        item = msgspec.json.decode(
            await conn.fetchval(
                "SELECT export_payload(e)::text FROM exports e WHERE id = $1", export_id
            )
        )
        assert item["colour"] == "PLUM" and set(item) == EXPORT_KEYS | {"colour"}

        # Back to the shipped definitions: applied again, as any changed definition is.
        for name, text in shapes.generated(KINDS).items():
            (copy / "repeatable" / name).write_text(text)
        assert await apply_migrations(conn, copy) == [
            "repeatable bdr_events",
            "repeatable export_events",
        ]
        await conn.execute("UPDATE exports SET status = 'cancelled' WHERE id = $1", export_id)
        assert "colour" not in (await _payloads(conn, export_id))[-1]


async def test_a_database_of_the_hand_written_bodies_upgrades(
    empty_db: str, tmp_path: Path
) -> None:
    """A database migrated to 0011 (the hand-written bodies) takes 0012 and the generated
    definitions in one transaction: the pieces the old payloads were joined from are gone, and
    an export made before the upgrade has its events and its item as the definition says."""
    old = tmp_path / "old"
    old.mkdir()
    for m in discover():
        if m.version <= 11:
            (old / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    async with connected(empty_db) as conn:
        await apply_migrations(conn, old, with_host_tables=True)
        await conn.execute("SET search_path = pmd, public")
        user_id = await _user(conn, "upgrade")
        export_id = await conn.fetchval(
            "INSERT INTO exports (user_id, part_bytes) VALUES ($1, 1000) RETURNING id", user_id
        )
        # The events' table by its own name (0018 adds its view).
        before = await conn.fetchval("SELECT payload FROM bdr_events WHERE bdr_id = $1", export_id)
        # Every key of the definition but those added since (error_code 0021, layout 0035).
        assert set(msgspec.json.decode(before)) == EXPORT_KEYS - ADDED_SINCE
        # 0012 first, the generated definitions last (later migrations between them).
        applied = await apply_migrations(conn)
        assert applied[0] == "0012_generated_event_payloads"
        assert applied[-2:] == ["repeatable bdr_events", "repeatable export_events"]
        gone = await conn.fetchval(
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'export%payload_00%'"
        )
        assert gone == 0
        await conn.execute("UPDATE exports SET status = 'processing' WHERE id = $1", export_id)
        events = await _payloads(conn, export_id)
        assert [set(p) for p in events] == [EXPORT_KEYS - ADDED_SINCE, EXPORT_KEYS]
        assert [export_update(p).status for p in events] == ["pending", "processing"]
        item = await conn.fetchval(
            "SELECT export_payload(e)::text FROM exports e WHERE id = $1", export_id
        )
        assert export_item(item).status == "processing"
