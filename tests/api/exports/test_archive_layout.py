"""Exports in the account-archive layout (issue 78): each part a ZIP in the layout Mastodon's
backup writes, opened with zipfile and read as each importer of the issue's table reads it
(PostyBirb+, GoToSocial's slurp, Sharkey, NeoDB, Nextcloud Social), every activity's terms
checked against the ActivityStreams context; the layout kept by incremental and recurring
exports; a bad layout refused. Real PostgreSQL and Redis; the worker is arq's, in burst mode."""

from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from msgspec.structs import replace
from PIL import Image
from pytest_aiohttp import AiohttpServer

from pmd_service.core.settings import Settings
from support.mailbox import Mailbox
from support.seeding import Factory, UserRow
from tests.api.exports.test_recurring_exports import new_worker_options
from tests.exports import NASTY, pixel_colours, post_export, ready_export, seeded
from tests.helpers import Client, assert_problem, eventually, run_worker

AS = "https://www.w3.org/ns/activitystreams"
PUBLIC = AS + "#Public"
EXTENSION = {"sensitive": "as:sensitive", "Hashtag": "as:Hashtag"}
MEDIA = re.compile(r"media_attachments/files/[^/]+/original/[^/]+")
AVATAR = b"\x89PNG\r\n\x1a\n avatar"


@pytest.fixture
def small(small: Settings) -> Settings:
    """Parts of ~64 KiB, and incremental exports without a cooldown of their own."""
    return replace(small, export_incremental_cooldown_seconds=0)


async def parts_of(client: Client, user: UserRow, item: dict[str, Any]) -> list[zipfile.ZipFile]:
    parts = []
    count = len(item["parts"])
    for part in item["parts"]:
        resp = await client.get(part["download_url"], headers=user.auth)
        assert resp.status == 200
        name = f"makapix-archive-{item['id'][:8]}-part-{part['number']}-of-{count}.zip"
        assert resp.headers["Content-Disposition"] == f"attachment; filename={name}"
        parts.append(zipfile.ZipFile(io.BytesIO(await resp.read())))
    return parts


def outbox_of(archive: zipfile.ZipFile) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(archive.read("outbox.json"))
    return document


def notes_of(archive: zipfile.ZipFile) -> list[dict[str, Any]]:
    return [item["object"] for item in outbox_of(archive)["orderedItems"]]


def postybirb(folder: Path) -> list[dict[str, Any]]:
    """What PostyBirb+ takes from an unpacked archive: each public or followers' Note with its
    files joined to the folder, its tags and its first attachment's alt text."""
    actor = json.loads((folder / "actor.json").read_text())
    outbox = json.loads((folder / actor["outbox"]).read_text())
    taken = []
    for activity in outbox["orderedItems"]:
        note = activity["object"]
        audience = note["to"] + note["cc"]
        if activity["type"] != "Create" or note["type"] != "Note":
            continue
        if PUBLIC not in audience and actor["followers"] not in audience:
            continue  # PostyBirb+ skips a direct message
        files = [folder / a["url"] for a in note["attachment"] if a["type"] == "Document"]
        assert all(f.is_file() for f in files), files
        tags = [t["name"].removeprefix("#") for t in note["tag"] if t["type"] == "Hashtag"]
        alt = note["attachment"][0]["name"]
        taken.append({"files": files, "tags": tags, "alt": alt, "url": note["url"]})
    return taken


def neodb_visibility(note: dict[str, Any], followers: str) -> str:
    """NeoDB's (and Mastodon's) reading of `to`/`cc`."""
    if PUBLIC in note["to"]:
        return "public"
    if PUBLIC in note["cc"]:
        return "unlisted"
    return "followers_only" if followers in note["to"] else "direct"


async def test_an_archive_reads_as_each_importer_reads_it(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner, posts = await seeded(factory, pool, small)
    fan = await pool.fetchrow("SELECT public_sqid, handle FROM users WHERE handle = 'fan'")
    assert fan is not None
    await pool.execute(
        "UPDATE posts SET description = $2 WHERE id = $1",
        posts[4].id,
        f"With <@{fan['public_sqid']}>\n\n<b>bold</b>",
    )
    avatar_id = uuid.uuid4()
    avatar = small.vault_path / "avatar" / "1a" / "2b" / f"{avatar_id}.png"
    avatar.parent.mkdir(parents=True, exist_ok=True)
    avatar.write_bytes(AVATAR)
    await pool.execute(
        "UPDATE users SET avatar_url = $2 WHERE id = $1",
        owner.id,
        f"https://vault.example/avatar/1a/2b/{avatar_id}.png",
    )

    item = await ready_export(ex_client, small, owner, layout="activitypub")
    assert item["layout"] == "activitypub"
    lost = posts[-1]
    assert [s["post_id"] for s in item["skipped"]] == [lost.id]  # the rest went in
    archives = await parts_of(ex_client, owner, item)
    base = small.base_url.rstrip("/")
    seen: dict[str, dict[str, Any]] = {}
    for number, archive in enumerate(archives, start=1):
        names = archive.namelist()
        assert len(names) == len(set(names))
        for root in ("outbox.json", "actor.json", "likes.json", "bookmarks.json", "avatar.png"):
            assert root in names  # at the zip's root: Sharkey's and NeoDB's reading
        for info in archive.infolist():  # the JSON deflated, the media and palettes stored
            deflated = info.compress_type == zipfile.ZIP_DEFLATED
            assert deflated == info.filename.endswith(".json"), info.filename

        assert item["parts"][number - 1]["file_size_bytes"] <= item["part_bytes"]
        outbox = outbox_of(archive)
        assert list(outbox)[:3] == ["@context", "id", "type"]
        assert outbox["@context"] == [AS, EXTENSION]
        assert outbox["id"] == "outbox.json" and outbox["type"] == "OrderedCollection"
        items = outbox["orderedItems"]
        assert outbox["totalItems"] == len(items) == item["parts"][number - 1]["artwork_count"]
        published = [datetime.fromisoformat(i["object"]["published"]) for i in items]
        assert published == sorted(published, reverse=True)  # newest first
        for activity in items:
            assert "@context" not in activity and activity["type"] == "Create"
            assert activity["object"]["type"] == "Note"

        actor = json.loads(archive.read("actor.json"))
        assert actor["type"] == "Person" and actor["preferredUsername"] == owner.handle
        assert actor["outbox"] == "outbox.json" and actor["likes"] == "likes.json"
        assert actor["bookmarks"] == "bookmarks.json"
        assert actor["icon"] == {"type": "Image", "mediaType": "image/png", "url": "avatar.png"}
        assert archive.read("avatar.png") == AVATAR
        assert actor["id"] == f"{base}/u/{owner.sqid}"
        for name in ("likes.json", "bookmarks.json"):
            collection = json.loads(archive.read(name))
            assert collection["type"] == "OrderedCollection" and collection["orderedItems"] == []
            assert "totalItems" not in collection and collection["id"] == name

        # Sharkey: each attachment found by its url's last segment, which names one entry.
        urls = [a["url"] for note in notes_of(archive) for a in note["attachment"]]
        last = [PurePosixPath(u).name for u in urls]
        assert len(last) == len(set(last))
        for url in urls:
            assert url in names and [
                n for n in names if n.endswith("/" + PurePosixPath(url).name)
            ] == [url]
            assert MEDIA.fullmatch(url), url  # Nextcloud Social's media folder
        assert {n for n in names if "/" in n} == set(urls)  # nothing else but the media

        # PostyBirb+ and GoToSocial's slurp read the unpacked folder.
        folder = tmp_path / f"part-{number}"
        archive.extractall(folder)
        for taken in postybirb(folder):
            seen[taken["url"]] = taken
        for note in notes_of(archive):
            assert note["inReplyTo"] is None  # slurp's top-level posts
            assert datetime.fromisoformat(note["published"]) <= datetime.fromisoformat(
                note["updated"]
            )
            seen[note["url"]]["note"] = note

    exported = posts[:-1]
    assert set(seen) == {f"{base}/p/{p.sqid}" for p in exported}
    followers = f"{base}/u/{owner.sqid}/followers"
    for i, post in enumerate(exported):
        taken = seen[f"{base}/p/{post.sqid}"]
        note = taken["note"]
        assert note["id"] == note["url"]
        assert taken["tags"] == ["pixelart", f"n{i}"]
        assert [t["href"] for t in note["tag"]] == [
            f"{base}/hashtags/pixelart",
            f"{base}/hashtags/n{i}",
        ]
        image = note["attachment"][0]
        assert image["type"] == "Document" and image["mediaType"] == "image/png"
        assert (image["width"], image["height"]) == (16, 16)
        assert taken["alt"] == (NASTY if i == 2 else f"Sprite {i}")
        assert (
            taken["files"][0].read_bytes()
            == (small.vault_path / post.shard / f"{post.storage_key}.png").read_bytes()
        )
        assert note["sensitive"] is False
        hidden = i in (1, 3)  # hidden by the artist, by a moderator
        assert neodb_visibility(note, followers) == ("followers_only" if hidden else "public")
        # Then the layers file (the sixth post has one) and the palettes, further Documents.
        suffixes = [".png", *([".mkpx"] if i == 5 else []), ".hex", ".gpl"]
        assert [PurePosixPath(a["url"]).name for a in note["attachment"]] == [
            post.sqid + suffix for suffix in suffixes
        ]
        assert all(a["type"] == "Document" for a in note["attachment"])
        files = dict(zip(suffixes, taken["files"], strict=True))
        if i == 5:
            assert files[".mkpx"].read_bytes() == b"MKPX\x01layers"
        palette = files[".hex"].read_text().splitlines()
        assert (
            set(palette) == set(pixel_colours(files[".png"].read_bytes())) and len(palette) <= 256
        )
        assert f"{post.sqid}" in files[".gpl"].read_text()
    assert "&lt;script&gt;" in seen[f"{base}/p/{exported[2].sqid}"]["note"]["content"]
    content = seen[f"{base}/p/{exported[4].sqid}"]["note"]["content"]
    assert content == f"<p>Sprite 4</p><p>With @{fan['handle']}</p><p>&lt;b&gt;bold&lt;/b&gt;</p>"


async def test_a_bad_layout_is_a_400_and_an_empty_account_a_422(
    ex_client: Client, factory: Factory
) -> None:
    owner = await factory.user()
    resp = await ex_client.post("/api/pmd/exports", json={"layout": "mastodon"}, headers=owner.auth)
    body = await assert_problem(resp, 400)
    assert body["errors"] == [{"field": "layout", "message": "must be `bagit` or `activitypub`"}]
    status, answer = await post_export(ex_client, owner, layout="activitypub")
    assert status == 422, answer


async def test_incremental_and_recurring_exports_keep_the_layout_they_follow(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool
) -> None:
    owner = await factory.user()
    await pool.execute(
        "UPDATE users SET avatar_url = 'https://avatars.githubusercontent.com/u/1' WHERE id = $1",
        owner.id,
    )
    _kept, retitled = [await factory.post(owner, title=f"Work {i}") for i in range(2)]
    first = await ready_export(ex_client, small, owner, layout="activitypub")

    await pool.execute(
        "UPDATE posts SET title = 'Renamed', metadata_modified_at = now() WHERE id = $1",
        retitled.id,
    )
    new = await factory.post(owner, title="New work")
    second = await ready_export(ex_client, small, owner, since="last")
    assert second["layout"] == "activitypub" and second["follows_export_id"] == first["id"]
    notes = {}
    for archive in await parts_of(ex_client, owner, second):
        for note in notes_of(archive):
            notes[note["url"].rpartition("/")[2]] = note
            # A post whose metadata alone changed carries its files too: a part stands alone.
            assert note["attachment"][0]["url"] in archive.namelist()
        actor = json.loads(archive.read("actor.json"))
        assert "icon" not in actor  # a GitHub picture is not in the vault
        assert not [n for n in archive.namelist() if n.startswith("avatar.")]
    assert set(notes) == {new.sqid, retitled.sqid}

    # Asked for, the other layout: a bag of what changed since.
    await factory.post(owner, title="Newer")
    third = await ready_export(ex_client, small, owner, since="last", layout="bagit")
    assert third["layout"] == "bagit"

    # A recurring export: each one after the first keeps the schedule's layout.
    await pool.execute("UPDATE exports SET created_at = created_at - interval '1 day'")
    resp = await ex_client.post(
        "/api/pmd/exports",
        json={"repeat_every_days": 30, "repeat_times": 2, "layout": "activitypub"},
        headers=owner.auth,
    )
    assert resp.status == 202, await resp.text()
    await run_worker(small)
    await factory.post(owner, title="Later")
    await pool.execute(
        "UPDATE export_schedules SET next_at = now() - interval '1 minute' WHERE user_id = $1",
        owner.id,
    )
    await run_worker(small, **new_worker_options(small))
    newest = await pool.fetchrow(
        "SELECT layout, follows_id, status FROM exports WHERE user_id = $1 "
        "ORDER BY created_at DESC LIMIT 1",
        owner.id,
    )
    assert newest is not None
    assert newest["follows_id"] is not None and newest["layout"] == "activitypub"
    assert newest["status"] == "ready"


async def test_an_archive_email_says_nothing_of_checking_a_bag(
    mail_client: tuple[Settings, Client], factory: Factory, smtp: Mailbox
) -> None:
    mailed, client = mail_client
    owner = await factory.user()
    await factory.post(owner, title="Work")
    await ready_export(client, mailed, owner, layout="activitypub", send_email=True)

    async def sent() -> bool:
        return len(smtp.messages) >= 1

    await eventually(sent, what="the ready email")
    plain = smtp.messages[0].get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert "is ready" in text and "BagIt" not in text and "README" not in text


async def test_an_artwork_of_many_colours_goes_in_without_a_palette(
    ex_client: Client, factory: Factory, small: Settings
) -> None:
    owner = await factory.user()
    image = Image.new("RGB", (20, 20))
    image.putdata([(n, n // 2, 255 - n) for n in range(256)] + [(1, 2, 3 + n) for n in range(144)])
    out = io.BytesIO()
    image.save(out, "PNG")
    post = await factory.post(owner, title="Gradient", data=out.getvalue(), width=20, height=20)
    item = await ready_export(ex_client, small, owner, layout="activitypub")
    assert item["skipped"] == [
        {
            "post_id": post.id,
            "public_sqid": post.sqid,
            "file": "palette",
            "reason": "too_many_colours",
        }
    ]
    (archive,) = await parts_of(ex_client, owner, item)
    (note,) = notes_of(archive)
    assert [a["url"] for a in note["attachment"]] == [
        f"media_attachments/files/{post.sqid}/original/{post.sqid}.png"
    ]


async def test_an_archive_fetches_its_media_and_avatar_from_artwork_base_url(
    ex_client: Client,
    factory: Factory,
    small: Settings,
    pool: asyncpg.Pool,
    aiohttp_server: AiohttpServer,
) -> None:
    """A worker without the vault fetches the avatar as it fetches the artworks."""
    served: dict[str, bytes] = {}

    async def vault(request: web.Request) -> web.Response:
        data = served.get(request.match_info["path"])
        return web.Response(status=404) if data is None else web.Response(body=data)

    app = web.Application()
    app.router.add_get("/vault/{path:.+}", vault)
    origin = await aiohttp_server(app)
    owner = await factory.user()
    post = await factory.post(owner, title="Far away")
    assert post.data is not None
    served[f"{post.shard}/{post.storage_key}.png"] = post.data
    avatar = f"avatar/3f/00/{uuid.uuid4()}.gif"
    served[avatar] = b"GIF89a avatar"
    await pool.execute(
        "UPDATE users SET avatar_url = $2 WHERE id = $1",
        owner.id,
        f"https://vault.example/{avatar}",
    )
    far = replace(
        small, artwork_base_url=str(origin.make_url("/vault")), vault_path=Path("/nonexistent")
    )
    status, item = await post_export(ex_client, owner, layout="activitypub")
    assert status == 202, item
    await run_worker(far)
    ready = await (await ex_client.get(f"/api/pmd/exports/{item['id']}", headers=owner.auth)).json()
    assert ready["status"] == "ready", ready
    (archive,) = await parts_of(ex_client, owner, ready)
    assert archive.read("avatar.gif") == b"GIF89a avatar"
    actor = json.loads(archive.read("actor.json"))
    assert actor["icon"] == {"type": "Image", "mediaType": "image/gif", "url": "avatar.gif"}
    (note,) = notes_of(archive)
    assert archive.read(note["attachment"][0]["url"]) == post.data
