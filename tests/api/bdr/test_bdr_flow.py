"""From POST to a downloadable ZIP, through a real arq worker, verified byte for byte."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import uuid
import zipfile
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from msgspec.structs import replace

from pmd_service.core.codes import ITEM_SENTENCES, HostCode
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.features.bdr.job_sql import enqueue_bdr
from pmd_service.host.vault import artwork_path
from support.mailbox import Mailbox
from support.seeding import Factory, PostRow
from tests.helpers import (
    assert_problem,
    built,
    download_zip,
    fetch_item,
    request_bdr,
    run_worker,
    zip_path,
)

Client = TestClient[Any, Any]


async def test_post_to_ready_zip(
    client: Client, factory: Factory, settings: Settings, tmp_path: Path
) -> None:
    owner = await factory.user("artist")
    fan = await factory.user("fan")
    posts: list[PostRow] = []
    for i, fmt in enumerate(["png", "gif", "webp", "bmp", "png"]):
        posts.append(
            await factory.post(
                owner, title=f"Ünïcødé ✨ #{i} 🐉", fmt=fmt, hashtags=["pixelart", "ドット絵"]
            )
        )
    c1 = await factory.comment(posts[0], fan, "Love it 😍")
    await factory.comment(posts[0], None, "reply from a deleted account", parent_id=c1)
    await factory.comment(posts[0], fan, "hidden", hidden_by_mod=True)
    await factory.comment(posts[0], fan, "gone", deleted_by_owner=True)
    for emoji in ["👍", "👍", "❤️"]:
        await factory.reaction(posts[0], fan, emoji)
    await factory.reaction(posts[1], None, "🔥")

    license_id = await factory.license("CC-BY-4.0")
    await factory.pool.execute(
        "UPDATE posts SET license_id = $1 WHERE id = $2", license_id, posts[-1].id
    )
    requested = [p.id for p in reversed(posts)]
    item = await request_bdr(
        client, owner, requested, include_comments=True, include_reactions=True
    )
    assert item["status"] == "pending"
    assert item["progress"] == {"done": 0, "total": 5}
    assert item["download_url"] is None

    await run_worker(settings)

    item = await fetch_item(client, owner, item["id"])
    assert item["status"] == "ready", item
    assert item["progress"] == {"done": 5, "total": 5}
    assert item["skipped"] == []
    assert item["download_url"] == f"/api/pmd/bdr/{item['id']}/download?target_sqid={owner.sqid}"
    assert item["completed_at"] and item["expires_at"] and item["started_at"]

    archive = await download_zip(client, owner, item["id"])
    names = archive.namelist()
    # Request order is kept.
    assert names[:5] == [f"artworks/{p.sqid}.{p.fmt}" for p in reversed(posts)]
    assert set(names[5:-1]) == {"metadata.json", "comments.json", "reactions.json"}
    # The manifest comes last, over every other file, and sha256sum checks it where unzipped.
    assert names[-1] == "manifest-sha256.txt"
    manifest = archive.read("manifest-sha256.txt").decode()
    assert [line.split("  ", 1)[1] for line in manifest.splitlines()] == names[:-1]
    archive.extractall(tmp_path)
    checked = await asyncio.to_thread(
        subprocess.run,
        ["sha256sum", "--strict", "-c", "manifest-sha256.txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": OK") == len(names) - 1
    for p in posts:
        info = archive.getinfo(f"artworks/{p.sqid}.{p.fmt}")
        assert info.compress_type == zipfile.ZIP_STORED
        assert (
            archive.read(info)
            == artwork_path(settings.vault_path, p.shard, p.storage_key, p.fmt).read_bytes()
        )
    assert archive.getinfo("metadata.json").compress_type == zipfile.ZIP_DEFLATED
    zip_file = zip_path(settings, owner, item["id"])
    assert item["file_size_bytes"] == zip_file.stat().st_size

    meta = json.loads(archive.read("metadata.json").decode("utf-8"))
    assert meta["user_handle"] == "artist"
    assert meta["artwork_count"] == 5
    assert meta["skipped"] == []
    first = meta["artworks"][0]
    assert first["sqid"] == posts[-1].sqid
    assert first["title"] == "Ünïcødé ✨ #4 🐉"
    assert first["hashtags"] == ["pixelart", "ドット絵"]
    assert first["filename"] == f"{posts[-1].sqid}.png"
    assert first["file_format"] == "png"
    assert first["license"] == "CC-BY-4.0" and "hidden_by_user" not in first
    assert meta["artworks"][1]["license"] is None
    # Emoji stay byte-exact (not \u-escaped).
    assert "🐉".encode() in archive.read("metadata.json")

    comments = json.loads(archive.read("comments.json"))["comments_by_artwork"]
    assert list(comments) == [posts[0].sqid]
    thread = comments[posts[0].sqid]
    assert [c["body"] for c in thread] == ["Love it 😍", "reply from a deleted account"]
    assert thread[0]["author_handle"] == "fan" and thread[0]["parent_id"] is None
    assert thread[1]["author_handle"] == "anonymous" and thread[1]["parent_id"] == str(c1)

    reactions = json.loads(archive.read("reactions.json"))["reactions_by_artwork"]
    assert reactions == {posts[0].sqid: {"👍": 2, "❤️": 1}, posts[1].sqid: {"🔥": 1}}

    # The stored checksum is the file's.
    row = await factory.pool.fetchrow(
        "SELECT file_sha256, file_path FROM batch_download_requests WHERE id = $1::uuid", item["id"]
    )
    assert row is not None
    assert row["file_path"] == f"bdr/{owner.sqid}/pmd-{item['id']}.zip"
    data = zip_path(settings, owner, item["id"]).read_bytes()
    assert row["file_sha256"] == hashlib.sha256(data).hexdigest()
    # No temp file left beside it.
    assert [p.name for p in (settings.zip_path / owner.sqid).iterdir()] == [f"pmd-{item['id']}.zip"]


async def test_json_files_only_when_asked(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, post, [item] = await built(client, factory, settings)
    archive = await download_zip(client, owner, item["id"])
    names = [f"artworks/{post.sqid}.png", "metadata.json", "manifest-sha256.txt"]
    assert archive.namelist() == names


async def test_skipped_artworks_are_listed_and_the_rest_delivered(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner = await factory.user()
    other = await factory.user()
    keep = await factory.post(owner, title="keep")
    deleted_later = await factory.post(owner, title="deleted later")
    missing = await factory.post(owner, title="missing file", data=None)
    moved = await factory.post(owner, title="moved")
    to_playlist = await factory.post(owner, title="became playlist")
    ids = [keep.id, deleted_later.id, missing.id, moved.id, to_playlist.id]
    item = await request_bdr(client, owner, ids)
    await factory.pool.execute(
        "UPDATE posts SET deleted_by_user = true WHERE id = $1", deleted_later.id
    )
    await factory.pool.execute("UPDATE posts SET owner_id = $2 WHERE id = $1", moved.id, other.id)
    await factory.pool.execute("UPDATE posts SET kind = 'playlist' WHERE id = $1", to_playlist.id)

    await run_worker(settings)

    item = await fetch_item(client, owner, item["id"])
    assert item["status"] == "ready"
    assert item["skipped"] == [
        {"post_id": deleted_later.id, "public_sqid": deleted_later.sqid, "reason": "deleted"},
        {"post_id": missing.id, "public_sqid": missing.sqid, "reason": "file_missing"},
        {"post_id": moved.id, "public_sqid": moved.sqid, "reason": "not_owner"},
        {"post_id": to_playlist.id, "public_sqid": to_playlist.sqid, "reason": "playlist"},
    ]
    archive = await download_zip(client, owner, item["id"])
    assert [n for n in archive.namelist() if n.startswith("artworks/")] == [
        f"artworks/{keep.sqid}.png"
    ]
    meta = json.loads(archive.read("metadata.json"))
    assert meta["artwork_count"] == 1
    reasons = ["deleted", "file_missing", "not_owner", "playlist"]
    assert [s["reason"] for s in meta["skipped"]] == reasons


async def test_nothing_to_add_fails_with_a_clear_message(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner = await factory.user()
    a = await factory.post(owner, data=None)
    b = await factory.post(owner)
    item = await request_bdr(client, owner, [a.id, b.id])
    await factory.pool.execute("UPDATE posts SET deleted_by_user = true WHERE id = $1", b.id)
    await run_worker(settings)
    item = await fetch_item(client, owner, item["id"])
    assert item["status"] == "failed"
    # The host's code and its one sentence; what each artwork lacked is in `skipped`.
    assert (item["error_code"], item["error_reason"]) == ("no_posts", "no_posts")
    assert item["error_message"] == ITEM_SENTENCES[HostCode.NO_POSTS]
    assert sorted(s["reason"] for s in item["skipped"]) == ["deleted", "file_missing"]
    assert item["download_url"] is None
    assert not zip_path(settings, owner, item["id"]).exists()
    resp = await client.get(f"/api/pmd/bdr/{item['id']}/download", headers=owner.auth)
    body = await assert_problem(resp, 400, "bdr_no_file")
    assert body["code"] == "bdr_not_ready" and body["details"]["status"] == "failed"


async def test_range_if_range_and_head(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, _, [item] = await built(client, factory, settings)
    url = f"/api/pmd/bdr/{item['id']}/download"
    full = await (await client.get(url, headers=owner.auth)).read()

    resp = await client.get(url, headers={**owner.auth, "Range": "bytes=10-109"})
    assert resp.status == 206
    assert await resp.read() == full[10:110]
    assert resp.headers["Content-Range"] == f"bytes 10-109/{len(full)}"

    head = await client.head(url, headers=owner.auth)
    assert head.status == 200
    assert int(head.headers["Content-Length"]) == len(full)
    etag, modified = head.headers["ETag"], head.headers["Last-Modified"]
    assert etag and modified

    resp = await client.get(url, headers={**owner.auth, "Range": "bytes=-20", "If-Range": etag})
    assert resp.status == 206
    assert await resp.read() == full[-20:]
    resp = await client.get(
        url, headers={**owner.auth, "Range": "bytes=0-9", "If-Range": '"stale"'}
    )
    assert resp.status == 200
    assert await resp.read() == full

    resp = await client.get(url, headers={**owner.auth, "If-None-Match": etag})
    assert resp.status == 304
    # An If-Range that is neither a matching ETag nor a date, and several ranges: whole file.
    for extra in ({"Range": "bytes=0-9", "If-Range": "garbage"}, {"Range": "bytes=0-1,5-6"}):
        resp = await client.get(url, headers={**owner.auth, **extra})
        assert resp.status == 200
        assert await resp.read() == full
    # A unit other than bytes is ignored (RFC 9110 §14.2): the whole file.
    for unit in ("items=0-1", "Items=0-1", "none"):
        resp = await client.get(url, headers={**owner.auth, "Range": unit})
        assert resp.status == 200, unit
        assert await resp.read() == full
    # A suffix of zero bytes, and a range past the end, are unsatisfiable: 416 with the size.
    for unsatisfiable in ("bytes=-0", "BYTES = -00", f"bytes={len(full)}-"):
        for method in (client.get, client.head):
            resp = await method(url, headers={**owner.auth, "Range": unsatisfiable})
            assert resp.status == 416, (unsatisfiable, method)
            assert resp.headers["Content-Range"] == f"bytes */{len(full)}"


async def test_email_sent_once_with_the_link(
    client: Client, factory: Factory, settings: Settings, smtp: Mailbox
) -> None:
    settings = replace(settings, smtp_host=smtp.host, smtp_port=smtp.port, mail_from="pmd@pmd.test")
    owner = await factory.user("mailme")
    post = await factory.post(owner)
    item = await request_bdr(client, owner, [post.id], send_email=True)
    await run_worker(settings)
    # The job running again (arq may re-run a job) must not send it again.
    assert settings.redis_url
    redis = create_redis(settings.redis_url)
    await enqueue_bdr(redis, uuid.UUID(item["id"]), retake="again")
    await redis.aclose()
    await run_worker(settings)

    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert message["To"] == "mailme@example.com"
    assert "ready" in message["Subject"]
    link = f"http://pmd.test/u/{owner.sqid}/posts?bdr={item['id']}"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert link in text.get_content() and "mailme" in text.get_content()
    assert link.replace("&", "&amp;") in html.get_content()


async def test_download_carries_repr_digest(
    client: Client, factory: Factory, settings: Settings
) -> None:
    """RFC 9530: the whole ZIP's SHA-256, on the whole answer and on a range of it alike."""
    owner, _, [item] = await built(client, factory, settings)
    url = f"/api/pmd/bdr/{item['id']}/download"
    whole = await client.get(url, headers=owner.auth)
    body = await whole.read()
    expected = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    assert whole.headers["Repr-Digest"] == expected
    part = await client.get(url, headers={**owner.auth, "Range": "bytes=0-9"})
    assert part.status == 206 and len(await part.read()) == 10
    assert part.headers["Repr-Digest"] == expected
    head = await client.head(url, headers=owner.auth)
    assert head.headers["Repr-Digest"] == expected
