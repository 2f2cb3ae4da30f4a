"""The daily cleanup: expiry and purge boundaries, temp files, empty folders, old events."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from pmd_service.core.settings import Settings
from pmd_service.upkeep.cleanup import daily_cleanup, old_files
from support.seeding import Factory
from tests.helpers import built, fetch_item

Client = TestClient[Any, Any]


async def test_expiry_boundary(
    client: Client, factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    owner, _, [due, not_yet] = await built(client, factory, settings, 2)
    set_expiry = (
        "UPDATE batch_download_requests SET expires_at = now() + $2::interval WHERE id = $1::uuid"
    )
    await factory.pool.execute(set_expiry, due["id"], timedelta(seconds=-1))
    await factory.pool.execute(set_expiry, not_yet["id"], timedelta(minutes=5))

    summary = await daily_cleanup(worker_ctx)

    assert summary["expired"] == 1
    expired = await fetch_item(client, owner, due["id"])
    assert expired["status"] == "expired" and expired["removed_at"] is None  # not removed
    assert (await fetch_item(client, owner, not_yet["id"]))["status"] == "ready"
    folder = settings.zip_path / owner.sqid
    assert not (folder / f"pmd-{due['id']}.zip").exists()
    assert (folder / f"pmd-{not_yet['id']}.zip").exists()


async def test_purge_boundary_and_what_stays(
    factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    owner = await factory.user()
    post = await factory.post(owner)
    now = datetime.now(UTC)
    rows = {
        ("failed", 15): True,
        ("cancelled", 15): True,
        ("expired", 14.01): True,
        ("failed", 13.9): False,
        ("ready", 20): False,  # never purged while ready: it expires first
        ("pending", 20): False,
    }
    ids = {}
    for (status, days), _ in rows.items():
        ids[(status, days)] = await factory.pool.fetchval(
            """INSERT INTO batch_download_requests
                   (user_id, post_ids, artwork_count, status, created_at, completed_at, expires_at)
               VALUES ($1, $2, 1, $3, $4, $4, $5) RETURNING id""",
            owner.id,
            [post.id],
            status,
            now - timedelta(days=days),
            now + timedelta(days=1),
        )
    summary = await daily_cleanup(worker_ctx)
    assert summary["purged"] == 3
    for key, purged in rows.items():
        exists = await factory.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM batch_download_requests WHERE id = $1)", ids[key]
        )
        assert exists is not purged, key


async def test_stale_temp_files_empty_folders_and_old_events(
    factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    owner = await factory.user()
    post = await factory.post(owner)
    folder = settings.zip_path / "someone"
    folder.mkdir(parents=True)
    old_part = folder / f".pmd-{uuid.uuid4()}.0123abcd.part"
    fresh_part = folder / f".pmd-{uuid.uuid4()}.4567abcd.part"
    # Names the service never gives a file: not its to remove, however old.
    foreign = [folder / ".a.b.part", folder / f"{uuid.uuid4()}.zip", folder / "notes.txt"]
    for path in (old_part, fresh_part, *foreign):
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    for path in (old_part, *foreign):
        os.utime(path, (two_hours_ago, two_hours_ago))
    empty = settings.zip_path / "nobody"
    empty.mkdir()
    await factory.pool.execute(
        "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count) VALUES ($1, $2, 1)",
        owner.id,
        [post.id],
    )
    await factory.pool.execute("UPDATE stream_events SET created_at = now() - interval '25 hours'")
    await factory.pool.execute(
        "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count) VALUES ($1, $2, 1)",
        owner.id,
        [post.id],
    )

    summary = await daily_cleanup(worker_ctx)

    assert not old_part.exists()
    assert fresh_part.exists()
    assert all(path.exists() for path in foreign)
    assert not empty.exists()
    assert folder.exists()
    assert summary["temp_files_removed"] == 1
    assert summary["events_purged"] == 1
    assert await factory.pool.fetchval("SELECT count(*) FROM stream_events") == 1


async def test_orphan_zips_are_removed_and_ready_ones_kept(
    client: Client, factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    owner, _, [item] = await built(client, factory, settings)
    folder = settings.zip_path / owner.sqid
    kept = folder / f"pmd-{item['id']}.zip"
    orphan = folder / "pmd-00000000-0000-4000-8000-000000000000.zip"
    young_orphan = folder / "pmd-00000000-0000-4000-8000-000000000001.zip"
    orphan.write_bytes(b"PK")
    young_orphan.write_bytes(b"PK")
    two_hours_ago = time.time() - 7200
    for path in (kept, orphan):
        os.utime(path, (two_hours_ago, two_hours_ago))
    summary = await daily_cleanup(worker_ctx)
    assert summary["orphan_zips_removed"] == 1
    assert kept.exists() and young_orphan.exists() and not orphan.exists()


def test_files_that_vanish_during_the_scan_are_skipped(tmp_path: Path) -> None:
    """Builds rename and remove their `.part` files while the cleanup lists the folder; an
    entry gone between the listing and its stat() is skipped, not the end of the cleanup."""
    folder = tmp_path / "someone"
    folder.mkdir()
    keep = folder / f".pmd-{uuid.uuid4()}.0123abcd.part"
    keep.write_bytes(b"old")
    os.utime(keep, (time.time() - 7200, time.time() - 7200))
    stop = threading.Event()

    def churn() -> None:  # as concurrent builds do: create, then rename or remove
        while not stop.is_set():
            names = [folder / f".pmd-{uuid.uuid4()}.{n:08x}.part" for n in range(20)]
            for path in names:
                path.write_bytes(b"")
            for path in names:
                path.unlink()

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(3000):
            parts, zips = old_files(tmp_path, time.time())
            assert parts == [keep] and zips == []
    finally:
        stop.set()
        thread.join()
