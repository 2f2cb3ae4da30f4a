"""`python -m pmd_service check-restore` (issue 54) on states a restore leaves, made one by one:
each is reported once, by its check, and nothing a consistent service holds is (a job queued
under a retake's id, a temp file, a file not named as the service names its own); the check
writes nothing, in the database, the folder, the bucket or Redis. The whole restore, with the
processes, is tests/processes/test_restore.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any

import asyncpg
import obstore
import pytest

from pmd_service.__main__ import main
from pmd_service.core import presence
from pmd_service.core.objects import open_store
from pmd_service.core.settings import Settings
from pmd_service.features.bdr.job_sql import enqueue_bdr
from pmd_service.jobs.context import job_context
from pmd_service.upkeep.restore_check import RestoreReport, check_restore
from support.seaweed import Seaweed
from support.seeding import Factory, bdr_row
from support.stack import database_env
from tests.cli_env import keep_process_logging
from tests.helpers import Client, assert_problem, fetch_item, request_bdr, run_worker, zip_path


async def _report(settings: Settings) -> RestoreReport:
    async with job_context(settings) as ctx:
        return await check_restore(ctx)


def _found(report: RestoreReport) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for finding in report.findings:
        found.setdefault(finding.check, set()).add(finding.id)
    return found


async def _state(pool: asyncpg.Pool, settings: Settings, redis: Any) -> Any:
    """What the check must leave as it is: every row it reads, the folder, the Redis keys (but
    people's presence, which the test's requests set and which expires by itself)."""
    tables = ("batch_download_requests", "exports", "export_parts", "export_schedules")
    rows = [[dict(r) for r in await pool.fetch(f"SELECT * FROM {t} ORDER BY 1, 2")] for t in tables]
    files = sorted(
        (str(p), p.stat().st_mtime_ns, p.stat().st_size)
        for p in settings.zip_path.rglob("*")
        if p.is_file()
    )
    keys = sorted(k for k in await redis.keys("*") if k != presence.KEY.encode())
    return rows, files, keys


async def test_each_inconsistency_is_found_once_and_nothing_is_changed(
    client: Client, factory: Factory, settings: Settings, pool: asyncpg.Pool
) -> None:
    owner, posts = await factory.owner_and_posts(2)
    exporter = await factory.user()
    await factory.post(exporter)
    ready = [await request_bdr(client, owner, [posts[0].id], send_email=True) for _ in range(3)]
    resp = await client.post("/api/pmd/exports", json={}, headers=exporter.auth)
    assert resp.status == 202, await resp.text()
    export_id = (await resp.json())["id"]
    await run_worker(settings)
    assert all([(await fetch_item(client, owner, i["id"]))["status"] == "ready" for i in ready])
    gone, longer, kept = (i["id"] for i in ready)
    zip_path(settings, owner, gone).unlink()
    with zip_path(settings, owner, longer).open("ab") as f:
        f.write(b"more")
    # The email of `kept` is owed (its SMTP send failed), `gone`'s and `longer`'s were sent.
    await pool.execute(
        "UPDATE batch_download_requests SET email_sent_at = CASE WHEN id = $1::uuid THEN NULL"
        " ELSE now() END WHERE status = 'ready'",
        kept,
    )
    (part,) = (settings.zip_path / "pmd-exports" / export_id).glob("part-*.zip")
    part.unlink()
    # Queued in Redis (the server enqueued it), queued under a retake's id, queued nowhere.
    queued = await request_bdr(client, owner, [posts[1].id])
    retaken = await bdr_row(pool, owner.id, [posts[1].id])
    lost = await bdr_row(pool, owner.id, [posts[1].id], status="processing")
    async with job_context(settings) as ctx:
        await enqueue_bdr(ctx["redis"], retaken, "late1")
        redis = ctx["redis"]
        # A ZIP no row names, a temp file of a run that died, a file not named as ours.
        unnamed = settings.zip_path / owner.sqid / f"pmd-{uuid.uuid4()}.zip"
        unnamed.write_bytes(b"PK")
        (settings.zip_path / owner.sqid / f".pmd-{uuid.uuid4()}.0123abcd.part").write_bytes(b"")
        (settings.zip_path / owner.sqid / f"{uuid.uuid4()}.zip").write_bytes(b"PK")
        # A recurring export two and a half days overdue.
        await pool.execute(
            "INSERT INTO export_schedules (user_id, user_sqid, every_days, remaining, next_at,"
            " part_bytes, include_comments, include_reactions, include_upscaled, send_email)"
            " VALUES ($1, $2, 1, 2, now() - interval '60 hours', 1, true, true, false, false)",
            exporter.id,
            exporter.sqid,
        )
        before = await _state(pool, settings, redis)
        report = await check_restore(ctx)
        assert await _state(pool, settings, redis) == before

    assert _found(report) == {
        "bdr-file-gone": {gone, longer},
        "bdr-not-queued": {str(lost)},
        "bdr-email-owed": {kept},
        "export-part-file-gone": {export_id},
        "export-schedule-due": {str(exporter.id)},
        "file-unnamed": {f"bdr/{owner.sqid}/{unnamed.name}"},
    }, report.render()
    details = {f.id: f.detail for f in report.findings}
    assert details[gone].endswith("is gone")
    size = zip_path(settings, owner, longer).stat().st_size
    assert details[longer].endswith(f"holds {size} bytes, not {size - 4}")
    assert "3 run(s) missed" in details[str(exporter.id)]
    assert queued["id"] not in details and str(retaken) not in details
    assert report.looked_at["bdr-not-queued"] == 3
    assert report.counts()["bdr-file-gone"] == 2 and not report.consistent
    lines = report.render().splitlines()
    assert len(lines) == len(report.findings) + 1 and lines[-1].startswith("7 findings")


async def test_a_consistent_state_is_said_so(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, posts = await factory.owner_and_posts(1)
    await request_bdr(client, owner, [posts[0].id])
    await run_worker(settings)
    report = await _report(settings)
    assert report.consistent, report.render()
    assert report.looked_at["bdr-file-gone"] == 1 and report.looked_at["file-unnamed"] == 1
    assert report.render().startswith("consistent: no finding")


async def test_the_command_exits_1_on_findings_and_prints_json(
    factory: Factory,
    settings: Settings,
    pool: asyncpg.Pool,
    redis_clean: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in {
        **database_env(settings),
        "REDIS_URL": settings.redis_url,
        "AUTO_MIGRATE": "false",
        "PMD_DATA_DIR": str(settings.data_dir),
        "ZIP_PATH": str(settings.zip_path),
        "VAULT_PATH": str(settings.vault_path),
    }.items():
        monkeypatch.setenv(name, value)
    keep_process_logging(monkeypatch)
    assert await asyncio.to_thread(main, ["check-restore"]) == 0
    assert capsys.readouterr().out.startswith("consistent")
    owner, posts = await factory.owner_and_posts(1)
    lost = await bdr_row(pool, owner.id, [posts[0].id])
    assert await asyncio.to_thread(main, ["check-restore", "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["consistent"] is False and printed["counts"]["bdr-not-queued"] == 1
    (finding,) = printed["findings"]
    assert finding["id"] == str(lost) and finding["check"] == "bdr-not-queued"
    assert "sweep" in finding["repair"]


async def test_in_a_bucket(
    client: Client,
    factory: Factory,
    settings: Settings,
    seaweed: Seaweed,
    s3_bucket: str,
    s3_prefix: str,
) -> None:
    """With ZIP_STORE: an object a ready row names that is gone, and one no row names."""
    settings = seaweed.settings(settings, s3_bucket, f"{s3_prefix}/zips")
    owner, posts = await factory.owner_and_posts(1)
    items = [await request_bdr(client, owner, [posts[0].id]) for _ in range(2)]
    await run_worker(settings)
    rows = {
        r["id"]: r["file_path"]
        for r in await factory.pool.fetch(
            "SELECT id::text, file_path FROM batch_download_requests WHERE status = 'ready'"
        )
    }
    assert set(rows) == {i["id"] for i in items}
    gone, _ = (i["id"] for i in items)
    bucket = settings.zip_bucket
    assert bucket is not None
    store = open_store(bucket, settings.s3_access)
    await obstore.delete_async(store, rows[gone].removeprefix("bdr/"))
    stray = f"{owner.sqid}/pmd-{uuid.uuid4()}.{hashlib.sha256(b'x').hexdigest()[:8]}.zip"
    await obstore.put_async(store, stray, b"PK")
    report = await _report(settings)
    assert _found(report) == {"bdr-file-gone": {gone}, "file-unnamed": {f"bdr/{stray}"}}
    assert report.looked_at["file-unnamed"] == 2  # `kept`'s object and the stray one


async def test_a_file_of_another_size_than_its_row_is_not_served(
    client: Client, factory: Factory, settings: Settings
) -> None:
    """Another file under a ready row's name (a folder restored from another moment) is not
    the ZIP the row describes: its download answers 410 and marks it, as for a file that is
    gone, rather than serve it under the row's digest."""
    owner, posts = await factory.owner_and_posts(1)
    item = await request_bdr(client, owner, [posts[0].id])
    resp = await client.post("/api/pmd/exports", json={}, headers=owner.auth)
    export_id = (await resp.json())["id"]
    await run_worker(settings)
    (part,) = (settings.zip_path / "pmd-exports" / export_id).glob("part-*.zip")
    for path in (zip_path(settings, owner, item["id"]), part):
        path.write_bytes(path.read_bytes()[:-1])
    body = await assert_problem(
        await client.get(f"/api/pmd/bdr/{item['id']}/download", headers=owner.auth), 410
    )
    assert "no longer available" in body["detail"]
    assert (await fetch_item(client, owner, item["id"]))["status"] == "expired"
    url = f"/api/pmd/exports/{export_id}/parts/1/download"
    await assert_problem(await client.get(url, headers=owner.auth), 410)
    resp = await client.get(f"/api/pmd/exports/{export_id}", headers=owner.auth)
    assert [p["status"] for p in (await resp.json())["parts"]] == ["expired"]
