"""An archive's actor.json carries the artist's bio as its `summary`: served plain as the Notes'
content is (each mention `@handle`, every text escaped), a paragraph a block of text."""

from __future__ import annotations

import io
import json
import zipfile

import asyncpg

from pmd_service.core.settings import Settings
from support.seeding import Factory, UserRow
from tests.exports import ready_export
from tests.helpers import Client


async def _actor(client: Client, settings: Settings, owner: UserRow) -> dict[str, object]:
    item = await ready_export(client, settings, owner, layout="activitypub")
    (part,) = item["parts"]
    resp = await client.get(part["download_url"], headers=owner.auth)
    with zipfile.ZipFile(io.BytesIO(await resp.read())) as archive:
        actor: dict[str, object] = json.loads(archive.read("actor.json"))
    return actor


async def test_the_bio_is_the_actors_summary_served_plain(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool
) -> None:
    fan = await factory.user("fan")
    owner = await factory.user("artist")
    await factory.post(owner, title="Work")
    bio = f"Pixels & <b>sprites</b>, with <@{fan.sqid}>\n\nCommissions\nopen <@nobody>"
    await pool.execute("UPDATE users SET bio = $2 WHERE id = $1", owner.id, bio)
    actor = await _actor(ex_client, small, owner)
    assert actor["summary"] == (
        "<p>Pixels &amp; &lt;b&gt;sprites&lt;/b&gt;, with @fan</p><p>Commissions<br>open @user</p>"
    )

    # Without a bio the summary is empty, as Mastodon writes it.
    other = await factory.user()
    await factory.post(other, title="Work")
    assert (await _actor(ex_client, small, other))["summary"] == ""
