"""Full exports: parts that are BagIt bags (checked by bagit-python and sha256sum), the API's
refusals, and what survives a crash, a cancel and an expiry. Real PostgreSQL, Redis, SMTP and
SeaweedFS; the worker is arq's, in burst mode."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace

from pmd_service.core.codes import ITEM_SENTENCES, HostCode
from pmd_service.core.settings import Settings
from pmd_service.features.exports.schemas import export_item
from support.mailbox import Mailbox
from support.seeding import Factory, PostRow, UserRow
from tests.helpers import assert_problem, eventually, run_worker

Client = TestClient[Any, Any]
Ctx = dict[str, Any]  # arq's context, as the `worker_ctx` fixture gives it
KIB = 1024
BAGIT = [sys.executable, "-m", "bagit"]


async def request_export(client: Client, user: UserRow, **body: Any) -> dict[str, Any]:
    resp = await client.post("/api/pmd/exports", json=body, headers=user.auth)
    assert resp.status == 202, await resp.text()
    item: dict[str, Any] = await resp.json()
    assert resp.headers["Location"] == f"/api/pmd/exports/{item['id']}"
    return item


async def get_export(client: Client, user: UserRow, export_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/pmd/exports/{export_id}", headers=user.auth)
    assert resp.status == 200, await resp.text()
    item: dict[str, Any] = await resp.json()
    return item


async def download_part(client: Client, user: UserRow, url: str) -> tuple[bytes, str]:
    resp = await client.get(url, headers=user.auth)
    assert resp.status == 200, await resp.text()
    body = await resp.read()
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert resp.headers["Repr-Digest"] == f"sha-256=:{digest}:"
    disposition = resp.headers["Content-Disposition"]
    return body, disposition.removeprefix("attachment; filename=")


async def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [str(c) for c in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


async def artworks(factory: Factory, owner: UserRow, sizes: list[int]) -> list[PostRow]:
    """Posts with files of these sizes, created oldest first (so the last is the newest)."""
    posts = []
    for i, size in enumerate(sizes):
        data = f"ART{i}:".encode() + bytes([i % 251]) * max(size - 8, 0)
        posts.append(await factory.post(owner, title=f"Work {i}", data=data))
    return posts


async def exporting(
    client: Client, factory: Factory, sizes: list[int]
) -> tuple[UserRow, dict[str, Any]]:
    """A new user with artworks of these sizes and an export of theirs requested."""
    owner = await factory.user()
    await artworks(factory, owner, sizes)
    return owner, await request_export(client, owner)


async def test_parts_are_bags_any_tool_validates(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner = await factory.user("artist")
    fan = await factory.user("fan")
    # ~20 KiB each in parts of 64 KiB: several parts; one of 100 KiB goes alone.
    posts = await artworks(factory, owner, [20 * KIB] * 7 + [100 * KIB] + [20 * KIB] * 3)
    await pool.execute("UPDATE posts SET hidden_by_user = true WHERE id = $1", posts[2].id)
    await pool.execute("UPDATE posts SET hidden_by_mod = true WHERE id = $1", posts[3].id)
    gone = await factory.post(owner, title="deleted", deleted_by_user=True)
    playlist = await factory.post(owner, title="a playlist", kind="playlist")
    await factory.comment(posts[0], fan, "Lovely ✨")
    await factory.reaction(posts[0], fan, "🔥")

    item = await request_export(ex_client, owner)
    assert item["status"] == "pending" and item["part_bytes"] == 64 * KIB
    assert item["include_comments"] and item["include_reactions"] and not item["send_email"]
    assert item["artwork_count"] == len(posts) and item["parts"] == []
    await run_worker(small)

    item = await get_export(ex_client, owner, item["id"])
    assert item["status"] == "ready", item
    assert item["progress"] == {"done": len(posts), "total": len(posts)}
    assert item["skipped"] == [] and item["expires_at"] and item["completed_at"]
    parts = item["parts"]
    count = len(parts)
    assert count >= 4 and [p["number"] for p in parts] == list(range(1, count + 1))
    assert all(p["status"] == "ready" and p["download_url"] for p in parts)
    assert item["total_bytes"] == sum(p["file_size_bytes"] for p in parts)

    exported: list[str] = []
    saved = tmp_path / "saved"
    saved.mkdir()
    for part in parts:
        body, filename = await download_part(ex_client, owner, part["download_url"])
        n = part["number"]
        assert filename == f"makapix-export-{item['id'][:8]}-part-{n}-of-{count}.zip"
        assert len(body) == part["file_size_bytes"]
        assert hashlib.sha256(body).hexdigest() == part["sha256"]
        (saved / filename).write_bytes(body)
        bag = f"makapix-export-{item['id'][:8]}-part-{n}"
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            assert archive.testzip() is None
            names = archive.namelist()
            assert all(name.startswith(bag + "/") for name in names)  # one top-level folder
            archive.extractall(tmp_path / "unzipped")
        folder = tmp_path / "unzipped" / bag
        checked = await run(*BAGIT, "--validate", ".", cwd=folder)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        summed = await run("sha256sum", "--strict", "-c", "manifest-sha256.txt", cwd=folder)
        assert summed.returncode == 0, summed.stdout + summed.stderr
        info = dict(
            line.split(": ", 1) for line in (folder / "bag-info.txt").read_text().splitlines()
        )
        assert info["Bag-Group-Identifier"] == item["id"]
        assert info["Bag-Count"] == f"{n} of {count}"
        assert info["Source-Organization"] == "Makapix Club"
        assert info["External-Identifier"] == f"makapix-export-{item['id']}-part-{n}"
        assert info["Payload-Oxum"] and info["Bagging-Date"]
        assert "sha256sum -c manifest-sha256.txt" in (folder / "README.txt").read_text()
        assert {p.name for p in (folder / "data").iterdir()} == {
            "artworks",
            "metadata.json",
            "comments.json",
            "reactions.json",
        }
        meta = json.loads((folder / "data" / "metadata.json").read_text())
        assert meta["export_id"] == item["id"]
        assert (meta["part"], meta["part_count"]) == (n, count)
        files = sorted(p.name for p in (folder / "data" / "artworks").iterdir())
        assert sorted(a["filename"] for a in meta["artworks"]) == files
        exported += [a["sqid"] for a in meta["artworks"]]
        # Parts stay within their size, but for one artwork larger than a part, alone.
        if part["file_size_bytes"] > 64 * KIB:
            assert part["artwork_count"] == 1 and files == [f"{posts[7].sqid}.png"]
        if f"{posts[0].sqid}.png" in files:  # the oldest artwork: the last part
            comments = json.loads((folder / "data" / "comments.json").read_text())
            assert comments["comments_by_artwork"][posts[0].sqid][0]["body"] == "Lovely ✨"
            reactions = json.loads((folder / "data" / "reactions.json").read_text())
            assert reactions["reactions_by_artwork"][posts[0].sqid] == {"🔥": 1}

    # Newest first, every eligible artwork exactly once, hidden ones with their flags.
    assert exported == [p.sqid for p in reversed(posts)]
    assert gone.sqid not in exported and playlist.sqid not in exported
    flags: dict[str, tuple[bool, bool]] = {}
    for folder in (tmp_path / "unzipped").iterdir():
        meta = json.loads((folder / "data" / "metadata.json").read_text())
        flags |= {a["sqid"]: (a["hidden_by_user"], a["hidden_by_mod"]) for a in meta["artworks"]}
    assert flags[posts[2].sqid] == (True, False) and flags[posts[3].sqid] == (False, True)
    assert flags[posts[0].sqid] == (False, False)
    # The artworks are byte-exact.
    for post in posts:
        found = list((tmp_path / "unzipped").glob(f"*/data/artworks/{post.sqid}.png"))
        assert len(found) == 1 and found[0].read_bytes() == post.data

    # SHA256SUMS checks every saved part with one command; a browser's link takes a ticket.
    minted = await ex_client.post(
        "/api/pmd/bdr/sse-ticket", params={"export_id": item["id"]}, headers=owner.auth
    )
    ticket = (await minted.json())["ticket"]
    resp = await ex_client.get(
        f"/api/pmd/exports/{item['id']}/SHA256SUMS", params={"ticket": ticket}
    )
    assert resp.status == 200 and resp.content_type == "text/plain"
    (saved / "SHA256SUMS").write_text(await resp.text())
    summed = await run("sha256sum", "--strict", "-c", "SHA256SUMS", cwd=saved)
    assert summed.returncode == 0 and summed.stdout.count(": OK") == count, summed.stdout


async def test_refusals(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool
) -> None:
    owner = await factory.user("owner")
    mod = await factory.user("mod", roles=["user", "moderator"])
    empty = await factory.user("empty")
    await artworks(factory, owner, [KIB, KIB])

    # part_bytes outside the bounds: 400 naming them.
    resp = await ex_client.post("/api/pmd/exports", json={"part_bytes": 10}, headers=owner.auth)
    body = await assert_problem(resp, 400)
    assert body["errors"][0]["field"] == "part_bytes"
    assert body["min_part_bytes"] == KIB and body["max_part_bytes"] == small.export_max_part_bytes
    assert "1024" in body["detail"]
    # Nothing to export: 422.
    resp = await ex_client.post("/api/pmd/exports", json={}, headers=empty.auth)
    assert "no artwork" in (await assert_problem(resp, 422))["detail"]
    # A moderator acting for someone else: 403 on every export endpoint.
    for method, url in [
        ("POST", "/api/pmd/exports"),
        ("GET", "/api/pmd/exports"),
        ("GET", f"/api/pmd/exports/{uuid.uuid4()}"),
        ("DELETE", f"/api/pmd/exports/{uuid.uuid4()}"),
        ("GET", f"/api/pmd/exports/{uuid.uuid4()}/parts/1/download"),
        ("GET", f"/api/pmd/exports/{uuid.uuid4()}/SHA256SUMS"),
    ]:
        resp = await ex_client.request(
            method,
            url,
            params={"target_sqid": owner.sqid},
            headers=mod.auth,
            json={} if method == "POST" else None,
        )
        assert "owner" in (await assert_problem(resp, 403))["detail"], (method, url)

    # Ten at once: exactly one is accepted, the others are told which one runs (409).
    answers = await asyncio.gather(
        *(ex_client.post("/api/pmd/exports", json={}, headers=owner.auth) for _ in range(10))
    )
    statuses = sorted(r.status for r in answers)
    assert statuses == [202] + [409] * 9, statuses
    running = next(r for r in answers if r.status == 202)
    export_id = (await running.json())["id"]
    conflict = await assert_problem(next(r for r in answers if r.status == 409), 409)
    assert conflict["export_id"] == export_id and export_id in conflict["detail"]
    assert conflict["progress"] == {"done": 0, "total": 2}
    await run_worker(small)
    assert (await get_export(ex_client, owner, export_id))["status"] == "ready"
    # The list says the bounds and when the next export may start.
    listed = await (await ex_client.get("/api/pmd/exports", headers=owner.auth)).json()
    assert [i["id"] for i in listed["items"]] == [export_id]
    assert listed["limits"] == {
        "min_part_bytes": KIB,
        "max_part_bytes": small.export_max_part_bytes,
        "default_part_bytes": 64 * KIB,
        "cooldown_seconds": 3600,
        "incremental_cooldown_seconds": 86400,
        "repeat_min_days": 1,
        "repeat_max_days": 365,
        "repeat_max_times": 12,
    }
    assert listed["next_export_at"] is not None

    # Within the cooldown, even ten at once: all 429 with Retry-After.
    answers = await asyncio.gather(
        *(ex_client.post("/api/pmd/exports", json={}, headers=owner.auth) for _ in range(10))
    )
    for resp in answers:
        await assert_problem(resp, 429)
        assert 0 < int(resp.headers["Retry-After"]) <= 3600
    assert await pool.fetchval("SELECT count(*) FROM exports WHERE user_id = $1", owner.id) == 1
    # A failed or cancelled export does not start the cooldown.
    await pool.execute("UPDATE exports SET status = 'failed' WHERE id = $1", uuid.UUID(export_id))
    second = await request_export(ex_client, owner)
    resp = await ex_client.delete(f"/api/pmd/exports/{second['id']}", headers=owner.auth)
    assert resp.status == 204
    cancelled = await get_export(ex_client, owner, second["id"])
    assert cancelled["status"] == "cancelled" and cancelled["removed_at"] is None
    await request_export(ex_client, owner)
    # Exports never count against the daily BDR limit.
    assert await pool.fetchval("SELECT count(*) FROM batch_download_requests") == 0

    # Not a UUID → 400; someone else's → 404; a part that is not a number → 404.
    await assert_problem(await ex_client.get("/api/pmd/exports/nope", headers=owner.auth), 400)
    other = await factory.user("other")
    resp = await ex_client.get(f"/api/pmd/exports/{export_id}", headers=other.auth)
    await assert_problem(resp, 404)
    url = f"/api/pmd/exports/{export_id}/parts/x/download"
    await assert_problem(await ex_client.get(url, headers=owner.auth), 404)
    url = f"/api/pmd/exports/{export_id}/parts/9/download"
    await assert_problem(await ex_client.get(url, headers=owner.auth), 404)


async def test_email_once_when_ready_links_to_the_page(
    mail_client: tuple[Settings, Client], factory: Factory, smtp: Mailbox
) -> None:
    mailed, client = mail_client
    owner = await factory.user("mailme")
    await artworks(factory, owner, [2 * KIB] * 3)
    item = await request_export(client, owner, send_email=True)
    await run_worker(mailed)
    assert (await get_export(client, owner, item["id"]))["status"] == "ready"
    await eventually(lambda: _has(smtp, 1), what="the ready email")
    await run_worker(mailed)  # nothing more to send
    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert "Your export of 3 artworks is ready" in message["Subject"]
    plain = message.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert f"http://pmd.test/u/{owner.sqid}/posts?export={item['id']}" in text
    assert "/download" not in text  # the page, not the files


async def _has(box: Mailbox, n: int) -> bool:
    return len(box.messages) >= n


# The first part an attempt records ends its transaction as PostgreSQL ends one side of a
# deadlock (SQLSTATE 40P01, "retry the transaction"); later ones pass.
SQL_DEADLOCK_ONCE = """
CREATE SEQUENCE deadlock_once;
CREATE FUNCTION deadlock_once() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF nextval('deadlock_once') = 1 THEN
        RAISE EXCEPTION 'deadlock detected' USING ERRCODE = 'deadlock_detected';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER deadlock_once BEFORE INSERT ON export_parts
FOR EACH ROW EXECUTE FUNCTION deadlock_once()
"""
SQL_NO_DEADLOCK = """
DROP TRIGGER deadlock_once ON export_parts;
DROP FUNCTION deadlock_once();
DROP SEQUENCE deadlock_once
"""


async def test_a_deadlock_mid_export_is_retried_not_failed(
    client: Client, factory: Factory, settings: Settings, pool: asyncpg.Pool
) -> None:
    owner = await factory.user()
    await artworks(factory, owner, [2 * KIB] * 3)
    await pool.execute(SQL_DEADLOCK_ONCE)
    try:
        item = await request_export(client, owner)
        await run_worker(settings)
        # The refused part, then the retry's.
        assert await pool.fetchval("SELECT last_value FROM deadlock_once") == 2
    finally:
        await pool.execute(SQL_NO_DEADLOCK)
    done = await get_export(client, owner, item["id"])
    assert (done["status"], len(done["parts"])) == ("ready", 1)


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    await eventually(check, within=30, what=what, interval=0.02)


async def test_a_crash_mid_part_keeps_the_published_parts(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, worker_ctx: Ctx
) -> None:
    from pmd_service.features.exports.job import process_export
    from pmd_service.jobs.context import state

    owner, item = await exporting(ex_client, factory, [20 * KIB] * 12)
    export_id = uuid.UUID(item["id"])
    st = state(worker_ctx)
    st.bdrs_idle.clear()  # builds wait between artworks: the test decides when each goes on

    async def parts_ready() -> int:
        n: int = await pool.fetchval(
            "SELECT count(*) FROM export_parts WHERE export_id = $1 AND status = 'ready'", export_id
        )
        return n

    job = asyncio.ensure_future(process_export(worker_ctx, str(export_id)))
    # Let the first part through, then hold the second mid-build.
    st.bdrs_idle.set()
    await until(lambda: _at_least(parts_ready, 1), "part 1 ready")
    st.bdrs_idle.clear()
    first = await pool.fetchrow(
        "SELECT file_path, sha256 FROM export_parts WHERE export_id = $1 AND number = 1", export_id
    )
    assert first is not None
    part1 = small.zip_path / first["file_path"].removeprefix("bdr/")
    stat_before = part1.stat()
    job.cancel()  # the worker dies mid-part
    with pytest.raises(asyncio.CancelledError):
        await job
    published = await parts_ready()
    assert published >= 1
    url = f"/api/pmd/exports/{export_id}/parts/{published + 1}/download"
    await assert_problem(await ex_client.get(url, headers=owner.auth), 409, "part_not_ready")
    # Had the export failed there, the part would never have a file: said so, not "wait".
    await pool.execute("UPDATE exports SET status = 'failed' WHERE id = $1", export_id)
    await assert_problem(await ex_client.get(url, headers=owner.auth), 409, "part_no_file")
    await pool.execute("UPDATE exports SET status = 'processing' WHERE id = $1", export_id)
    # Its heartbeat stops: the sweep's takeover, as after a real crash.
    await pool.execute(
        "UPDATE exports SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", export_id
    )
    st.bdrs_idle.set()
    assert await process_export(worker_ctx, str(export_id)) == "ready"

    done = await get_export(ex_client, owner, item["id"])
    assert done["status"] == "ready" and done["progress"]["done"] == 12
    again = await pool.fetchrow(
        "SELECT file_path, sha256 FROM export_parts WHERE export_id = $1 AND number = 1", export_id
    )
    assert again is not None and dict(again) == dict(first)
    stat_after = part1.stat()  # not rebuilt: the same file, untouched
    assert (stat_after.st_ino, stat_after.st_mtime_ns) == (
        stat_before.st_ino,
        stat_before.st_mtime_ns,
    )
    assert sum(p["artwork_count"] for p in done["parts"]) == 12
    # No temp file of the dead run is left once the export is done.
    leftovers = [p.name for p in part1.parent.iterdir() if not p.name.endswith(".zip")]
    assert leftovers == [] or all(name.startswith(".part-") for name in leftovers)


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


async def test_expiry_removes_the_parts(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, worker_ctx: Ctx
) -> None:
    from pmd_service.upkeep.cleanup import daily_cleanup

    owner, item = await exporting(ex_client, factory, [30 * KIB] * 4)
    await run_worker(small)
    item = await get_export(ex_client, owner, item["id"])
    files = [
        small.zip_path / "pmd-exports" / item["id"] / f"part-{p['number']}.zip"
        for p in item["parts"]
    ]
    assert len(files) >= 2 and all(f.exists() for f in files)
    url = item["parts"][0]["download_url"]
    await pool.execute(
        "UPDATE exports SET expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(item["id"]),
    )
    await assert_problem(await ex_client.get(url, headers=owner.auth), 410)
    summary = await daily_cleanup(worker_ctx)
    assert summary["export_parts_expired"] == len(files)
    assert not any(f.exists() for f in files)
    item = await get_export(ex_client, owner, item["id"])
    assert item["status"] == "expired" and item["removed_at"] is None  # expired, not removed
    assert all(p["status"] == "expired" and p["download_url"] is None for p in item["parts"])
    await assert_problem(await ex_client.get(url, headers=owner.auth), 410)


async def test_a_ready_export_lasts_its_own_days(
    ex_client: Client, factory: Factory, small: Settings
) -> None:
    """EXPORT_EXPIRY_DAYS, not BDR_EXPIRY_DAYS, dates a ready export's end."""
    owner, item = await exporting(ex_client, factory, [20 * KIB])
    await run_worker(replace(small, bdr_expiry_days=2, export_expiry_days=30))
    item = await get_export(ex_client, owner, item["id"])
    assert item["status"] == "ready", item
    ends, completed = (datetime.fromisoformat(item[k]) for k in ("expires_at", "completed_at"))
    assert ends - completed == timedelta(days=30)


async def test_an_export_out_of_attempts_tells_its_owner_about_the_export(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool
) -> None:
    owner, item = await exporting(ex_client, factory, [20 * KIB])
    await pool.execute("UPDATE exports SET attempts = 4 WHERE id = $1", uuid.UUID(item["id"]))
    await run_worker(small)
    item = await get_export(ex_client, owner, item["id"])
    assert item["status"] == "failed", item
    assert (item["error_code"], item["error_reason"]) == ("internal", "internal")
    assert item["error_message"] == ITEM_SENTENCES[HostCode.INTERNAL]


async def test_a_ready_export_removed_by_its_owner_leaves_no_file(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool
) -> None:
    owner, item = await exporting(ex_client, factory, [30 * KIB] * 3)
    await run_worker(small)
    folder = small.zip_path / "pmd-exports" / item["id"]
    assert list(folder.glob("part-*.zip"))
    resp = await ex_client.delete(f"/api/pmd/exports/{item['id']}", headers=owner.auth)
    assert resp.status == 204
    assert list(folder.glob("*.zip")) == []
    item = await get_export(ex_client, owner, item["id"])
    # The status set stays the contract's; `removed_at` says it was removed, not expired.
    assert item["status"] == "expired" and item["removed_at"] is not None
    removed_at = datetime.fromisoformat(item["removed_at"])
    assert removed_at < datetime.fromisoformat(item["expires_at"])
    # The stream's last event of it makes the same item, so a page watching learns it too.
    payload = await pool.fetchval(
        "SELECT payload::text FROM stream_events WHERE subject_id = $1 ORDER BY id DESC LIMIT 1",
        uuid.UUID(item["id"]),
    )
    assert msgspec.to_builtins(export_item(payload)) == item
    # Removing it again changes nothing.
    resp = await ex_client.delete(f"/api/pmd/exports/{item['id']}", headers=owner.auth)
    assert resp.status == 204
    assert await get_export(ex_client, owner, item["id"]) == item
    part = item["parts"][0]
    url = f"/api/pmd/exports/{item['id']}/parts/{part['number']}/download"
    await assert_problem(await ex_client.get(url, headers=owner.auth), 410)


async def test_the_sweep_queues_an_export_whose_job_was_lost(
    ex_client: Client,
    factory: Factory,
    small: Settings,
    pool: asyncpg.Pool,
    worker_ctx: Ctx,
    redis_clean: None,
) -> None:
    from pmd_service.upkeep.sweep import sweep

    owner, item = await exporting(ex_client, factory, [KIB] * 2)
    await worker_ctx["redis"].flushdb()  # Redis lost the job: only the row is left
    await run_worker(small)
    assert (await get_export(ex_client, owner, item["id"]))["status"] == "pending"
    await pool.execute("UPDATE exports SET created_at = now() - interval '1 minute'")
    assert (await sweep(worker_ctx))["requeued"] == 1
    await run_worker(small)
    assert (await get_export(ex_client, owner, item["id"]))["status"] == "ready"
