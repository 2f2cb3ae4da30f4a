"""Incremental exports that never miss a change (issue 51): only an export that reached `ready`
is followed (`since` by id, `since: last`, every recurring export), whatever happened to those
cancelled or failed after their parts were planned; a post carries its files only when it is
new or its artwork or layers file changed, so a hide and an unhide of every post carry no
artwork; README.txt says the export is incremental and what it follows; a handle never starts
a line of its own in a tag file; a deactivated or banned user's schedule is cancelled with a
reason. Real PostgreSQL and Redis; the worker is arq's, in burst mode; bags validated with
bagit-python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from msgspec.structs import replace

from pmd_service.core.settings import Settings
from pmd_service.host.vault import artwork_path, relative_layers_path, vault_file_in
from support.seeding import Factory, PostRow, UserRow
from tests.api.exports.test_recurring_exports import listed, new_worker_options, time_passes
from tests.exports import post_export, ready_export, unpacked
from tests.helpers import Client, assert_problem, run_worker

KIB = 1024


@pytest.fixture
def small(small: Settings) -> Settings:
    """No cooldown of either kind: one export after another, as days apart."""
    return replace(
        small,
        export_part_bytes=256 * KIB,
        export_cooldown_seconds=0,
        export_incremental_cooldown_seconds=0,
    )


async def metadata(folders: list[Path]) -> list[dict[str, Any]]:
    return [
        entry
        for folder in folders
        for entry in json.loads((folder / "data" / "metadata.json").read_text())["artworks"]
    ]


def payload_files(folders: list[Path], under: str) -> list[str]:
    return sorted(p.name for f in folders for p in (f / "data" / under).glob("*"))


# --- only a ready export is followed ----------------------------------------------------------


async def test_an_export_cancelled_after_its_plan_is_never_followed(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner = await factory.user()
    kept, retitled = [await factory.post(owner, title=f"Work {i}") for i in range(2)]
    first = await ready_export(ex_client, small, owner)

    await pool.execute(
        "UPDATE posts SET title = 'Renamed', metadata_modified_at = now() WHERE id = $1",
        retitled.id,
    )
    status, second = await post_export(ex_client, owner, since="last")
    assert status == 202, second
    # While it runs it cannot be followed, and the answer names the one that can.
    status, problem = await post_export(ex_client, owner, since=second["id"])
    assert status == 400 and problem["errors"][0]["field"] == "since", problem
    assert problem["since_status"] == "pending"
    assert problem["followable_export_id"] == first["id"]
    # Its worker planned it (the posts it was to hold recorded), then the user cancelled it.
    await pool.execute(
        "UPDATE exports SET status = 'processing', started_at = now(),"
        " covered_post_ids = $2 WHERE id = $1",
        second["id"],
        [kept.id, retitled.id],
    )
    resp = await ex_client.delete(f"/api/pmd/exports/{second['id']}", headers=owner.auth)
    assert resp.status == 204
    assert await pool.fetchval("SELECT status FROM exports WHERE id = $1", second["id"]) == (
        "cancelled"
    )

    resp = await ex_client.post(
        "/api/pmd/exports", json={"since": second["id"]}, headers=owner.auth
    )
    problem = await assert_problem(resp, 400)
    assert problem["since_status"] == "cancelled"
    assert problem["followable_export_id"] == first["id"]
    assert first["id"] in problem["detail"]

    # `last` follows the ready one: the change made before the cancelled one is held.
    third = await ready_export(ex_client, small, owner, since="last")
    assert third["follows_export_id"] == first["id"]
    folders = await unpacked(ex_client, owner, third, tmp_path)
    assert [e["sqid"] for e in await metadata(folders)] == [retitled.sqid]


async def test_an_export_failed_after_its_plan_is_never_followed(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner = await factory.user()
    await factory.post(owner, title="Old")
    first = await ready_export(ex_client, small, owner)
    # A new post whose file is not in the vault yet: the next export plans it, then fails.
    late = await factory.post(owner, title="Late", data=None)
    status, second = await post_export(ex_client, owner, since="last")
    assert status == 202, second
    await run_worker(small)
    failed = await pool.fetchrow(
        "SELECT status, covered_post_ids FROM exports WHERE id = $1", second["id"]
    )
    assert failed is not None
    assert failed["status"] == "failed" and late.id in failed["covered_post_ids"]

    status, problem = await post_export(ex_client, owner, since=second["id"])
    assert status == 400 and problem["since_status"] == "failed", problem
    assert problem["followable_export_id"] == first["id"]

    # The file arrives; the post changed before the failed export is in the next one.
    path = artwork_path(small.vault_path, late.shard, late.storage_key, late.fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PIXELS late")
    third = await ready_export(ex_client, small, owner, since="last")
    assert third["follows_export_id"] == first["id"]
    folders = await unpacked(ex_client, owner, third, tmp_path)
    assert payload_files(folders, "artworks") == [f"{late.sqid}.png"]


async def test_a_schedule_after_a_failed_run_follows_the_last_ready_export(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner = await factory.user()
    await factory.post(owner, title="Old")
    resp = await ex_client.post(
        "/api/pmd/exports", json={"repeat_every_days": 30, "repeat_times": 4}, headers=owner.auth
    )
    assert resp.status == 202, await resp.text()
    first = await resp.json()
    await run_worker(small)

    late = await factory.post(owner, title="Late", data=None)
    await time_passes(pool, owner)
    await run_worker(small, **new_worker_options(small))  # the second run fails on the missing file
    second = (await listed(ex_client, owner))["items"][0]
    assert second["status"] == "failed" and second["follows_export_id"] == first["id"]

    path = artwork_path(small.vault_path, late.shard, late.storage_key, late.fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PIXELS late")
    await time_passes(pool, owner)
    await run_worker(small, **new_worker_options(small))
    third = (await listed(ex_client, owner))["items"][0]
    assert third["id"] != second["id"], "the third run made no export"
    assert third["status"] == "ready" and third["follows_export_id"] == first["id"]
    folders = await unpacked(ex_client, owner, third, tmp_path)
    assert payload_files(folders, "artworks") == [f"{late.sqid}.png"]


# --- files only when they changed --------------------------------------------------------------


async def hide_and_unhide(ex_client: Client, owner: UserRow, posts: list[PostRow]) -> None:
    for action in ("hide", "unhide"):
        resp = await ex_client.post(
            "/api/pmd/action",
            json={"action": action, "post_ids": [p.id for p in posts]},
            headers=owner.auth,
        )
        assert resp.status == 200, await resp.text()


async def test_a_hide_and_unhide_of_every_post_carries_no_artwork(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner = await factory.user()
    posts = [await factory.post(owner, title=f"Work {i}") for i in range(4)]
    replaced, layered = posts[0], posts[1]
    layers = vault_file_in(
        small.vault_path.resolve(), relative_layers_path(layered.shard, layered.storage_key)
    )
    layers.parent.mkdir(parents=True, exist_ok=True)
    layers.write_bytes(b"MKPX layers")
    await pool.execute(
        "UPDATE posts SET mkpx_file_bytes = 11, mkpx_attached_at = now() - interval '1 day'"
        " WHERE id = $1",
        layered.id,
    )
    first = await ready_export(ex_client, small, owner)

    await hide_and_unhide(ex_client, owner, posts)
    second = await ready_export(ex_client, small, owner, since="last")
    assert second["follows_export_id"] == first["id"]
    assert second["artwork_count"] == len(posts)
    folders = await unpacked(ex_client, owner, second, tmp_path / "second")
    entries = await metadata(folders)
    # Every post is listed, as a change of metadata alone, and no file is carried.
    assert sorted(e["sqid"] for e in entries) == sorted(p.sqid for p in posts)
    assert {e["change"] for e in entries} == {"metadata"}
    assert all(e["files"] == {} for e in entries)
    assert payload_files(folders, "artworks") == [] and payload_files(folders, "layers") == []
    assert second["total_bytes"] < 64 * KIB
    readme = (folders[0] / "README.txt").read_text()
    assert "incremental export" in readme.splitlines()[0]
    assert first["id"] in readme and first["started_at"][:10] in readme

    # An artwork replaced, a layers file attached and a new post carry their files.
    path = artwork_path(small.vault_path, replaced.shard, replaced.storage_key, replaced.fmt)
    path.write_bytes(b"PIXELS replaced")
    await pool.execute(
        "UPDATE posts SET artwork_modified_at = now(), metadata_modified_at = now() WHERE id = $1",
        replaced.id,
    )
    await pool.execute(
        "UPDATE posts SET mkpx_attached_at = now(), metadata_modified_at = now() WHERE id = $1",
        layered.id,
    )
    new = await factory.post(owner, title="New")
    await hide_and_unhide(ex_client, owner, [posts[2]])
    third = await ready_export(ex_client, small, owner, since="last")
    folders = await unpacked(ex_client, owner, third, tmp_path / "third")
    changes = {e["sqid"]: (e["change"], e["files"]) for e in await metadata(folders)}
    assert changes == {
        replaced.sqid: ("files", {"artwork": f"artworks/{replaced.sqid}.png"}),
        layered.sqid: (
            "files",
            {"artwork": f"artworks/{layered.sqid}.png", "layers": f"layers/{layered.sqid}.mkpx"},
        ),
        new.sqid: ("added", {"artwork": f"artworks/{new.sqid}.png"}),
        posts[2].sqid: ("metadata", {}),
    }
    assert payload_files(folders, "artworks") == sorted(
        f"{p.sqid}.png" for p in (replaced, layered, new)
    )
    assert payload_files(folders, "layers") == [f"{layered.sqid}.mkpx"]
    assert (folders[0] / "data" / "artworks" / f"{replaced.sqid}.png").read_bytes() == (
        b"PIXELS replaced"
    )


# --- tag files ---------------------------------------------------------------------------------


async def test_a_handle_with_a_line_break_adds_no_line_to_the_tag_files(
    ex_client: Client, factory: Factory, small: Settings, tmp_path: Path
) -> None:
    owner = await factory.user("evil\nSource-Organization: Fake\r\u2028x")
    await factory.post(owner)
    item = await ready_export(ex_client, small, owner)
    (folder,) = await unpacked(ex_client, owner, item, tmp_path)
    info = (folder / "bag-info.txt").read_text().split("\n")
    labels = [line.split(":", 1)[0] for line in info if line]
    assert labels == [
        "Source-Organization",
        "Bagging-Date",
        "External-Identifier",
        "External-Description",
        "Bag-Group-Identifier",
        "Bag-Count",
        "Bag-Size",
        "Payload-Oxum",
    ]
    assert "evilSource-Organization: Fakex" in info[labels.index("External-Description")]
    readme = (folder / "README.txt").read_text().split("\n")
    assert readme[0].endswith("@evilSource-Organization: Fakex, part 1 of 1")
    assert not any(line.startswith("Source-Organization") for line in readme)


# --- schedules of accounts that are gone ------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("deactivated = true", "deactivated"),
        ("banned_until = now() + interval '30 days'", "banned until"),
    ],
)
async def test_the_schedule_of_a_deactivated_or_banned_user_is_cancelled_with_a_reason(
    ex_client: Client,
    factory: Factory,
    small: Settings,
    pool: asyncpg.Pool,
    state: str,
    why: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = await factory.user()
    await factory.post(owner)
    resp = await ex_client.post(
        "/api/pmd/exports",
        json={"repeat_every_days": 7, "repeat_times": 3, "send_email": True},
        headers=owner.auth,
    )
    assert resp.status == 202
    await run_worker(small)
    await factory.post(owner, title="Since")
    await pool.execute(f"UPDATE users SET {state} WHERE id = $1", owner.id)
    await time_passes(pool, owner)
    with caplog.at_level("INFO", logger="pmd_service.features.exports.recurring"):
        await run_worker(small, **new_worker_options(small))
    assert await pool.fetchval("SELECT count(*) FROM exports WHERE user_id = $1", owner.id) == 1
    row = await pool.fetchrow(
        "SELECT cancelled_at, cancel_reason, remaining FROM export_schedules WHERE user_id = $1",
        owner.id,
    )
    assert row is not None
    assert row["cancelled_at"] is not None and why in row["cancel_reason"]
    assert row["remaining"] == 2
    assert any(why in r.getMessage() and str(owner.id) in r.getMessage() for r in caplog.records)
    # Once the account can sign in again, the list shows the schedule cancelled, and why.
    await pool.execute(
        "UPDATE users SET deactivated = false, banned_until = NULL WHERE id = $1", owner.id
    )
    schedule = (await listed(ex_client, owner))["schedule"]
    assert schedule["cancel_reason"] == row["cancel_reason"]
    assert schedule["cancelled_at"] is not None
    resp = await ex_client.post(
        "/api/pmd/exports", json={"repeat_every_days": 7, "repeat_times": 3}, headers=owner.auth
    )
    assert resp.status == 202, await resp.text()  # a new one may be asked for
    schedule = (await listed(ex_client, owner))["schedule"]
    assert schedule["cancel_reason"] is None and schedule["cancelled_at"] is None
