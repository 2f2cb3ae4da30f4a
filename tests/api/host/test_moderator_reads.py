"""A moderator's every read of a user's ZIP is in the host's audit log: any range, and the
redirect to a bucket's signed URL (real SeaweedFS), once per moderator, file and hour."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from msgspec.structs import replace

from pmd_service.core.settings import Settings
from support.seaweed import ACCESS_KEY, REGION, SECRET_KEY
from support.seeding import Factory, UserRow
from tests.helpers import Client, after_worker

SQL_READS = """
SELECT actor_id, target_type, target_id, note FROM audit_logs
WHERE action = 'pmd_bdr_download' ORDER BY created_at
"""


@pytest.fixture(params=["folder", "bucket"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Folder mode (the bytes from the server), or ZIPs in the bucket (a 302 to a signed URL)."""
    if request.param == "folder":
        return settings
    seaweed = request.getfixturevalue("seaweed")
    bucket, prefix = request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_prefix")
    return replace(
        settings,
        zip_store=f"s3://{bucket}/{prefix}/zips",
        aws_endpoint_url=seaweed.endpoint,
        aws_region=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


async def _ready(
    client: Client, factory: Factory, settings: Settings
) -> tuple[UserRow, UserRow, str]:
    """A new owner's ready download of two artworks, and a moderator: the owner, the moderator
    and the download's URL."""
    owner, posts = await factory.owner_and_posts(2)
    item = await after_worker(client, settings, owner, [p.id for p in posts])
    assert item["status"] == "ready", item
    return owner, await factory.user(roles=["user", "moderator"]), item["download_url"]


async def _get(client: Client, url: str, user: UserRow, **headers: str) -> int:
    resp = await client.get(url, headers={**user.auth, **headers}, allow_redirects=False)
    await resp.read()
    return resp.status


async def test_every_moderator_read_is_audited_once_an_hour_whatever_its_range(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, mod, url = await _ready(client, factory, settings)
    bdr_id = url.split("/")[4]
    read = 206 if settings.zip_store is None else 302

    # A HEAD reads nothing; the owner's own reads are not a moderator's.
    assert (await client.head(url, headers=mod.auth, allow_redirects=False)).status in (200, 302)
    assert await _get(client, url, owner) in (200, 302)
    assert await factory.pool.fetch(SQL_READS) == []

    # A resumed download, never its byte 0 (a ZIP's first byte is always `P`).
    assert await _get(client, url, mod, Range="bytes=1-") == read
    rows = await factory.pool.fetch(SQL_READS)
    assert [(r["actor_id"], r["target_type"], r["target_id"]) for r in rows] == [
        (mod.id, "user", str(owner.id))
    ]
    assert json.loads(rows[0]["note"]) == {"bdr_id": bdr_id}

    # The rest of a resumable download, ranges at once: still one row.
    ranges = [f"bytes={n * 10}-{n * 10 + 9}" for n in range(8)]
    statuses = await asyncio.gather(*(_get(client, url, mod, Range=r) for r in ranges))
    assert set(statuses) == {read}
    assert await _get(client, url, mod) in (200, 302)
    assert len(await factory.pool.fetch(SQL_READS)) == 1

    # Another moderator is a row of their own; the same moderator an hour later, another.
    other = await factory.user(roles=["user", "moderator"])
    assert await _get(client, url, other, Range="bytes=3-") == read
    await factory.pool.execute("UPDATE audited_reads SET hour = hour - interval '1 hour'")
    assert await _get(client, url, mod, Range="bytes=2-") == read
    actors = [r["actor_id"] for r in await factory.pool.fetch(SQL_READS)]
    assert actors == [mod.id, other.id, mod.id]


async def test_a_moderators_read_by_ticket_is_audited(
    client: Client, factory: Factory, settings: Settings
) -> None:
    """A link the browser follows (a download ticket) is the moderator's read as well."""
    owner, mod, url = await _ready(client, factory, settings)
    bdr_id = url.split("/")[4]
    resp = await client.post(
        "/api/pmd/bdr/sse-ticket",
        params={"bdr_id": bdr_id, "target_sqid": owner.sqid},
        headers=mod.auth,
    )
    assert resp.status == 200, await resp.text()
    ticket: dict[str, Any] = await resp.json()
    assert "?target_sqid=" in url
    got = await client.get(
        f"{url}&ticket={ticket['ticket']}", headers={"Range": "bytes=1-"}, allow_redirects=False
    )
    assert got.status in (206, 302), await got.text()
    assert [r["actor_id"] for r in await factory.pool.fetch(SQL_READS)] == [mod.id]


async def test_a_moderators_whole_download_is_audited_in_either_mode(
    client: Client, factory: Factory, settings: Settings
) -> None:
    """No Range at all: the bytes from the server, or the 302 to the bucket's signed URL."""
    _, mod, url = await _ready(client, factory, settings)
    assert await _get(client, url, mod) == (200 if settings.zip_store is None else 302)
    assert [r["actor_id"] for r in await factory.pool.fetch(SQL_READS)] == [mod.id]
