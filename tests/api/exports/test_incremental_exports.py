"""Incremental exports (issue 45): `since` an earlier export, only the posts created or changed
since it started, `data/removed.json` naming its posts that are gone, a cooldown of their own,
nothing new answered 200 without an export, and every bad `since` a 400 before any state
check. Real PostgreSQL and Redis; the worker is arq's, in burst mode; bags validated with
bagit-python."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg
import pytest
from msgspec.structs import replace

from pmd_service.core.settings import Settings
from support.seeding import Factory, PostRow
from tests.exports import post_export, ready_export, unpacked
from tests.helpers import Client, SmallApp, assert_problem


@pytest.fixture
def small(small: Settings) -> Settings:
    """A full export's cooldown running all along: incremental ones have their own."""
    return replace(small, export_incremental_cooldown_seconds=0)


def exported_sqids(folders: list[Path]) -> list[str]:
    return [
        a["sqid"]
        for folder in folders
        for a in json.loads((folder / "data" / "metadata.json").read_text())["artworks"]
    ]


async def test_an_incremental_export_holds_what_changed_and_lists_what_is_gone(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner = await factory.user()
    kept, retitled, layered, deleted, playlist = [
        await factory.post(owner, title=f"Work {i}") for i in range(5)
    ]
    first = await ready_export(ex_client, small, owner)
    assert first["follows_export_id"] is None and first["removed_count"] == 0

    await pool.execute(
        "UPDATE posts SET title = 'Renamed', metadata_modified_at = now() WHERE id = $1",
        retitled.id,
    )
    await pool.execute(
        "UPDATE posts SET mkpx_file_bytes = 5, mkpx_attached_at = now() WHERE id = $1", layered.id
    )
    await pool.execute(
        "UPDATE posts SET deleted_by_user = true, deleted_by_user_date = now() WHERE id = $1",
        deleted.id,
    )
    await pool.execute("UPDATE posts SET kind = 'playlist' WHERE id = $1", playlist.id)
    new = await factory.post(owner, title="New work")

    second = await ready_export(ex_client, small, owner, since="last")
    assert second["follows_export_id"] == first["id"]
    assert second["changed_since"] == first["started_at"]
    assert second["removed_count"] == 2
    assert second["artwork_count"] == 3 and second["progress"] == {"done": 3, "total": 3}
    folders = await unpacked(ex_client, owner, second, tmp_path)
    assert sorted(exported_sqids(folders)) == sorted([retitled.sqid, layered.sqid, new.sqid])
    assert kept.sqid not in exported_sqids(folders)
    removed = json.loads((folders[0] / "data" / "removed.json").read_text())
    assert removed["follows_export_id"] == first["id"]
    assert [(r["post_id"], r["public_sqid"], r["reason"]) for r in removed["removed"]] == [
        (deleted.id, deleted.sqid, "deleted"),
        (playlist.id, playlist.sqid, "playlist"),
    ]
    info = (folders[0] / "bag-info.txt").read_text()
    assert f"Follows-Export-Identifier: {first['id']}\n" in info
    assert "Changed-Since: " in info
    meta = json.loads((folders[0] / "data" / "metadata.json").read_text())
    assert meta["follows_export_id"] == first["id"]
    assert "data/removed.json" in (folders[0] / "README.txt").read_text()

    # Nothing changed since the second started: a 200, and no export is made.
    status, answer = await post_export(ex_client, owner, since=second["id"])
    assert status == 200, answer
    assert answer["nothing_changed"] is True and answer["since_export_id"] == second["id"]
    assert "Nothing changed since" in answer["message"]
    # The answer is the one the OpenAPI document declares for a 200.
    doc = await (await ex_client.get("/openapi.json")).json()
    declared = doc["paths"]["/api/pmd/exports"]["post"]["responses"]["200"]
    ref = declared["content"]["application/json"]["schema"]["$ref"]
    shape = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(shape["required"]) == set(answer)
    count = await pool.fetchval("SELECT count(*) FROM exports WHERE user_id = $1", owner.id)
    assert count == 2

    # A third, by id, follows the second: the post restored since comes back, and an
    # export whose only news is a deletion is a part with removed.json and no artwork.
    await pool.execute("UPDATE posts SET deleted_by_user = false WHERE id = $1", deleted.id)
    third = await ready_export(ex_client, small, owner, since=second["id"])
    third_folders = await unpacked(ex_client, owner, third, tmp_path / "third")
    assert exported_sqids(third_folders) == [deleted.sqid]
    await pool.execute("UPDATE posts SET deleted_by_user = true WHERE id = $1", kept.id)
    fourth = await ready_export(ex_client, small, owner, since="last")
    assert fourth["follows_export_id"] == third["id"] and fourth["artwork_count"] == 0
    fourth_folders = await unpacked(ex_client, owner, fourth, tmp_path / "fourth")
    assert exported_sqids(fourth_folders) == []
    gone = json.loads((fourth_folders[0] / "data" / "removed.json").read_text())["removed"]
    assert [r["post_id"] for r in gone] == [kept.id]


async def test_bad_since_values_are_400_whatever_the_state(
    small_app: SmallApp, factory: Factory, pool: asyncpg.Pool
) -> None:
    waiting, client = await small_app(export_incremental_cooldown_seconds=3600)
    owner = await factory.user()
    other = await factory.user()
    await factory.post(owner)
    await factory.post(other)

    # No export ready yet: `last` names nothing.
    status, problem = await post_export(client, owner, since="last")
    assert status == 400 and problem["errors"][0]["field"] == "since", problem

    first = await ready_export(client, waiting, owner)
    theirs = await ready_export(client, waiting, other)
    # Within both cooldowns, a bad value is still a 400 naming it, never a 429.
    for bad in ["bogus", "", "1234", str(uuid.uuid4()), theirs["id"], "LAST"]:
        status, problem = await post_export(client, owner, since=bad)
        assert status == 400, (bad, problem)
        assert problem["errors"] == [{"field": "since", "message": problem["errors"][0]["message"]}]
    status, problem = await post_export(client, owner, since=first["id"], part_bytes=1)
    assert status == 400 and problem["errors"][0]["field"] == "part_bytes"
    status, problem = await post_export(client, owner, since=12)
    assert status in (400, 422) and problem["errors"][0]["field"] == "since"
    # A failed export cannot be followed either.
    failed = await pool.fetchval(
        "INSERT INTO exports (user_id, user_sqid, part_bytes, status, error_message,"
        " completed_at) VALUES ($1, $2, 65536, 'failed', 'broke', now()) RETURNING id",
        owner.id,
        owner.sqid,
    )
    status, problem = await post_export(client, owner, since=str(failed))
    assert status == 400, problem

    # A good one waits for the incremental cooldown, saying which.
    resp = await client.post("/api/pmd/exports", json={"since": "last"}, headers=owner.auth)
    await assert_problem(resp, 429)
    assert "incremental export" in (await resp.json())["detail"]
    listed = await (await client.get("/api/pmd/exports", headers=owner.auth)).json()
    assert listed["next_incremental_export_at"] is not None
    assert listed["limits"]["incremental_cooldown_seconds"] == 3600


async def test_a_full_export_cooldown_does_not_hold_back_an_incremental_one(
    ex_client: Client, factory: Factory, small: Settings
) -> None:
    owner = await factory.user()
    await factory.post(owner)
    await ready_export(ex_client, small, owner)
    status, _ = await post_export(ex_client, owner)
    assert status == 429  # a full one waits its week
    post: PostRow = await factory.post(owner, title="after")
    item = await ready_export(ex_client, small, owner, since="last")
    assert item["artwork_count"] == 1 and item["parts"][0]["artwork_count"] == 1
    assert post.sqid
