"""The CLI as an operator expects it: a `pmd-service` command whose --help says what it is for,
commands that require only what they use, a person not kept waiting 30 s for a database that is
down, each result printed once, `cleanup --dry-run`, and `check-host` on a development
database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
import uuid
from dataclasses import replace as replace_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import obstore
import pytest
from msgspec.structs import replace

from pmd_service.__main__ import main
from pmd_service.core.objects import incomplete_uploads, open_store
from pmd_service.core.settings import Settings
from pmd_service.jobs.context import job_context, state
from pmd_service.upkeep import cleanup as cleanup_module
from pmd_service.upkeep.cleanup import (
    FolderTidy,
    apply_cleanup,
    cleanup_dry_run,
    daily_cleanup,
    plan_cleanup,
)
from support.seaweed import Seaweed
from support.seeding import Factory
from support.stack import free_port, service_env
from tests.cli_env import admin_value, operator_shell
from tests.helpers import CHECKOUT, SECRET, on_port
from tests.procs import CLI, run

SCRIPT = Path(sys.executable).with_name("pmd-service")


@pytest.fixture
def cli(
    settings: Settings, admin_database_url: str, monkeypatch: pytest.MonkeyPatch, redis_clean: None
) -> Settings:
    """An operator's shell on the test database (its sweep takes pending rows at once);
    `main` run in-process."""
    return operator_shell(settings, admin_database_url, monkeypatch, JOB_PENDING_GRACE_SECONDS="0")


# --- the command itself ----------------------------------------------------------------------


def test_the_console_script_and_what_its_help_says_first() -> None:
    """`pmd-service` is installed by the package ([project.scripts]); its --help starts with
    what the tool is for (it used to start with "Operations CLI: `python -m pmd_service
    --help`")."""
    scripts = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"pmd-service": "pmd_service.__main__:main"}
    assert SCRIPT.exists(), "reinstall the package (make .venv/.installed)"
    done = subprocess.run(
        [SCRIPT, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    usage, what, *_ = done.stdout.split("\n\n")
    assert usage.startswith("usage: pmd-service [-h] [--version] COMMAND")
    assert what.startswith("The Post Management Dashboard's backend for a pixel-art site: ")
    assert "bulk" in what and "ZIP" in what
    version = subprocess.run(
        [SCRIPT, "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert version.stdout.startswith("pmd-service ")
    # The module form names itself so.
    done = subprocess.run(
        [*CLI, "stats", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=CHECKOUT,
        check=True,
    )
    assert done.stdout.startswith("usage: python -m pmd_service stats [-h] [--wait SECONDS]")


# --- required only where used ----------------------------------------------------------------


def test_commands_that_sign_no_token_need_no_jwt_secret(
    capsys: pytest.CaptureFixture[str], cli: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["stats"]) == 0
    assert "queue_depth" in json.loads(capsys.readouterr().out)
    assert main(["check-host", "--dev-database"]) in (0, 1)  # what it finds is another test's
    assert main(["sweep"]) == 0 and main(["cleanup"]) == 0
    assert "JWT_SECRET_KEY" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:  # the one that signs
        main(["token", "Op1"])
    assert stopped.value.code == 2
    assert "JWT_SECRET_KEY is required" in capsys.readouterr().err
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    assert main(["token", "Op1"]) == 2  # now it gets as far as the user
    assert "no user has the public id 'Op1'" in capsys.readouterr().err


# --- a person is not kept waiting ------------------------------------------------------------


async def test_a_person_learns_within_seconds_that_the_database_is_down(
    settings: Settings, tmp_path: Path
) -> None:
    """A command a person runs tries once (it used to wait the server's 30 s, ten warning
    lines); --wait, or STARTUP_WAIT_SECONDS set, makes it wait."""
    down = replace(
        settings,
        database_url=on_port(settings.database_url, free_port()),
        database_direct_url=None,
        database_pooler="none",
    )
    env = service_env(down, tmp_path)  # STARTUP_WAIT_SECONDS unset, as in a shell
    for argv in (["stats"], ["migrate"], ["check-host"]):
        code, proc = await run([*CLI, *argv], env, within=60)
        assert code == 1, proc.log()
        # One try, then the answer: no retry line ("(try N; next in …)"), no giving up after
        # a wait; a command that waited would say both.
        assert not any("(try " in line or "gave up after" in line for line in proc.err), proc.log()
        assert proc.out == [] and len(proc.err) == 1, proc.log()
        assert "PostgreSQL is unreachable" in proc.err[0], proc.log()
        assert "to wait for" in proc.err[0] and "--wait SECONDS" in proc.err[0], proc.log()
        # migrate and check-host need no Redis: they neither look for it nor name it.
        assert ("REDIS_URL" in proc.err[0]) is (argv == ["stats"]), proc.log()
    code, proc = await run([*CLI, "migrate", "--wait", "1.2"], env, within=60)
    assert code == 1, proc.log()
    *tries, last = proc.err
    assert len(tries) >= 2 and all("(try " in line for line in tries), proc.log()
    assert "gave up after" in last and "(--wait)" in last, proc.log()


# --- each result once --------------------------------------------------------------------------


def test_each_result_is_printed_once(
    capsys: pytest.CaptureFixture[str], cli: Settings, admin_database_url: str
) -> None:
    """The sweep and the cleanup log their summary (the worker's log has nothing else); run
    from the CLI that summary is the result on stdout, and not a log line as well."""
    user_id = admin_value(
        admin_database_url, "INSERT INTO users (handle, email) VALUES ('u', 'u@x') RETURNING id"
    )
    admin_value(
        admin_database_url,
        "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count)"
        " VALUES ($1, '{1}', 1)",
        user_id,
    )
    assert main(["sweep"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["requeued"] == 1
    assert "re-enqueued" not in err, err
    for argv in (["cleanup"], ["cleanup", "--dry-run"]):
        assert main(argv) == 0
        out, err = capsys.readouterr()
        summary = json.loads(out)
        assert str({k: v for k, v in summary.items() if k != "dry_run"}) not in err, err
        assert len(err.splitlines()) == 3, err  # its steps


# --- cleanup --dry-run -----------------------------------------------------------------------


async def _scenario(factory: Factory, root: Path) -> None:
    """A bit of everything the cleanup does, in the BDR folder and the database."""
    now = datetime.now(UTC)
    two_hours_ago = time.time() - 7200
    a, b = await factory.user(), await factory.user()
    post = await factory.post(a)

    async def bdr(
        user_id: int,
        status: str,
        done_days: float,
        expires_days: float | None,
        with_file: bool = False,
        owner_sqid: str = "",
    ) -> None:
        bdr_id = uuid.uuid4()
        path = f"bdr/{owner_sqid}/pmd-{bdr_id}.zip" if with_file else None
        await factory.pool.execute(
            """INSERT INTO batch_download_requests (id, user_id, post_ids, artwork_count, status,
                   created_at, completed_at, expires_at, file_path)
               VALUES ($1, $2, $3, 1, $4, $5, $5, $6, $7)""",
            bdr_id,
            user_id,
            [post.id],
            status,
            now - timedelta(days=done_days),
            None if expires_days is None else now + timedelta(days=expires_days),
            path,
        )
        if with_file:
            (root / owner_sqid).mkdir(parents=True, exist_ok=True)
            (root / owner_sqid / f"pmd-{bdr_id}.zip").write_bytes(b"PK")

    await bdr(a.id, "ready", 8, -1, with_file=True, owner_sqid=a.sqid)  # expires; folder emptied
    await bdr(b.id, "ready", 1, 6, with_file=True, owner_sqid=b.sqid)  # kept
    await bdr(a.id, "ready", 20, -13)  # expires, then is purged in the same run
    await bdr(a.id, "failed", 20, None)  # purged
    await bdr(a.id, "failed", 2, None)  # kept: young
    await bdr(999_999, "cancelled", 1, None)  # purged: its user is gone
    await factory.pool.execute("UPDATE stream_events SET created_at = now() - interval '25 hours'")
    await bdr(a.id, "pending", 0, None)  # its event is young
    # Files: a temp file of a dead run (its folder then empty), an orphan ZIP, an empty folder.
    dead = root / "c"
    dead.mkdir()
    (dead / f".pmd-{uuid.uuid4()}.0123abcd.part").write_bytes(b"partial")
    (root / b.sqid / f"pmd-{uuid.uuid4()}.zip").write_bytes(b"PK")
    (root / "nobody").mkdir()
    # Exports: one past its expiry with two parts on disk, one failed long ago, and a stale file
    # in the folder of a ready one.
    due, live = uuid.uuid4(), uuid.uuid4()
    for export_id, status, done_days, expires_days in (
        (due, "ready", 8, -1),
        (uuid.uuid4(), "failed", 20, None),
        (live, "ready", 1, 6),
    ):
        await factory.pool.execute(
            """INSERT INTO exports (id, user_id, status, part_bytes, created_at, completed_at,
                   expires_at) VALUES ($1, $2, $3, 1000000, $4, $4, $5)""",
            export_id,
            a.id,
            status,
            now - timedelta(days=done_days),
            None if expires_days is None else now + timedelta(days=expires_days),
        )
    (root / "pmd-exports" / str(due)).mkdir(parents=True)
    for number in (1, 2):
        await factory.pool.execute(
            """INSERT INTO export_parts (export_id, number, status, post_ids, artwork_count,
                   estimated_bytes, file_path) VALUES ($1, $2, 'ready', $3, 1, 1, $4)""",
            due,
            number,
            [post.id],
            f"bdr/pmd-exports/{due}/part-{number}.zip",
        )
        (root / "pmd-exports" / str(due) / f"part-{number}.zip").write_bytes(b"PK")
    (root / "pmd-exports" / str(live)).mkdir()
    (root / "pmd-exports" / str(live) / "part-9.zip").write_bytes(b"PK")
    _age(root, two_hours_ago)


def _age(root: Path, mtime: float) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (mtime, mtime))


def _files(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


async def _state(pool: asyncpg.Pool, root: Path) -> tuple[object, ...]:
    """Every row the cleanup may touch, and every file and folder under ZIP_PATH."""
    rows = []
    for table in ("batch_download_requests", "exports", "export_parts", "stream_events"):
        rows.append(sorted(map(str, await pool.fetch(f"SELECT * FROM {table}"))))
    return (*rows, _files(root))


async def test_the_dry_run_says_what_a_run_does_and_changes_nothing(
    factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    await _scenario(factory, settings.zip_path)
    before = await _state(factory.pool, settings.zip_path)
    preview = await cleanup_dry_run(worker_ctx)
    assert await _state(factory.pool, settings.zip_path) == before
    done = await daily_cleanup(worker_ctx)
    assert preview == {"dry_run": True, **done}
    # Every count is at work here: the equality above is not one of zeros.
    assert done == {
        "expired": 2,
        "export_parts_expired": 2,
        "purged": 4,
        "events_purged": 6,
        "temp_files_removed": 1,
        "orphan_zips_removed": 2,
        "folders_removed": 5,
    }
    assert await _state(factory.pool, settings.zip_path) != before
    # The run after: what the first left (the exports' folder, emptied last) is found again.
    assert await cleanup_dry_run(worker_ctx) == {
        "dry_run": True,
        **await daily_cleanup(worker_ctx),
    }


async def test_the_run_does_the_dry_runs_plan(
    factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    """Not only the counts: the run expires, purges and removes exactly the rows, files and
    folders of the plan the dry run shows, and tells what it did as a plan of its own."""
    await _scenario(factory, settings.zip_path)
    st = state(worker_ctx)
    plan = await plan_cleanup(st)
    assert {"dry_run": True, **plan.summary()} == await cleanup_dry_run(worker_ctx)
    bdrs = plan.kinds["bdr"]
    assert isinstance(plan.tidy, FolderTidy) and bdrs.expire and bdrs.purge and plan.tidy.folders
    done = await apply_cleanup(st, plan)
    assert done == plan
    left = {r["id"] for r in await factory.pool.fetch("SELECT id FROM batch_download_requests")}
    assert not left & bdrs.purge
    expired = await factory.pool.fetch(
        "SELECT id FROM batch_download_requests WHERE status = 'expired'"
    )
    assert {r["id"] for r in expired} == set(bdrs.expire) - bdrs.purge
    gone = plan.tidy.temp_files | plan.tidy.orphans | plan.tidy.folders
    assert not [path for path in gone if path.exists()]


async def test_a_row_changed_after_the_plan_is_left(
    factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    """Between the plan and its run, a failed request is requeued and an expiring export is
    renewed: the run re-checks each planned row, so neither is purged or expired, and the
    export's files and folder stay; the rest of the plan is done."""
    await _scenario(factory, settings.zip_path)
    st = state(worker_ctx)
    plan = await plan_cleanup(st)
    requeued = await factory.pool.fetchval(
        "UPDATE batch_download_requests SET status = 'pending', completed_at = NULL"
        " WHERE status = 'failed' AND created_at < now() - interval '14 days' RETURNING id"
    )
    renewed = await factory.pool.fetchval(
        "UPDATE exports SET expires_at = now() + interval '1 day' WHERE status = 'ready'"
        " AND expires_at < now() RETURNING id"
    )
    bdrs, exports = plan.kinds["bdr"], plan.kinds["export"]
    assert requeued in bdrs.purge and renewed in exports.expire
    assert isinstance(plan.tidy, FolderTidy)
    kept_folder = settings.zip_path / "pmd-exports" / str(renewed)
    done = await apply_cleanup(st, plan)
    assert done == replace_dataclass(
        plan,
        kinds={
            "bdr": replace_dataclass(bdrs, purge=bdrs.purge - {requeued}),
            "export": replace_dataclass(
                exports, expire={k: v for k, v in exports.expire.items() if k != renewed}
            ),
        },
        tidy=replace_dataclass(plan.tidy, folders=plan.tidy.folders - {kept_folder}),
    )
    assert (
        await factory.pool.fetchval(
            "SELECT status FROM batch_download_requests WHERE id = $1", requeued
        )
        == "pending"
    )
    assert sorted(p.name for p in kept_folder.iterdir()) == ["part-1.zip", "part-2.zip"]
    parts = await factory.pool.fetch(
        "SELECT status FROM export_parts WHERE export_id = $1", renewed
    )
    assert [r["status"] for r in parts] == ["ready", "ready"]


async def test_the_dry_run_in_a_bucket(
    factory: Factory,
    settings: Settings,
    seaweed: Seaweed,
    s3_bucket: str,
    s3_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ZIP_STORE in a bucket: the uploads it would abort and the ZIPs it would remove are
    only listed."""
    in_bucket = seaweed.settings(settings, s3_bucket, f"{s3_prefix}/zips")
    bucket = in_bucket.zip_bucket
    assert bucket is not None
    store = open_store(bucket, in_bucket.s3_access)
    await obstore.put_async(store, f"someone/pmd-{uuid.uuid4()}.0badc0de.zip", b"orphan")
    await obstore.put_async(store, "someone/notes.txt", b"not the service's")
    async with seaweed.client() as s3:
        await s3.create_multipart_upload(
            Bucket=s3_bucket, Key=bucket.key(f"someone/pmd-{uuid.uuid4()}.deadbeef.zip")
        )
    monkeypatch.setattr(cleanup_module, "TEMP_MAX_AGE_SECONDS", 0)

    def listed() -> list[str]:
        return sorted(m["path"] for batch in obstore.list(store) for m in batch)

    objects = listed()
    async with job_context(in_bucket) as ctx:
        preview = await cleanup_dry_run(ctx)
        assert listed() == objects
        assert len(await incomplete_uploads(bucket, in_bucket.s3_access)) == 1
        done = await daily_cleanup(ctx)
    assert preview == {"dry_run": True, **done}
    assert done["orphan_zips_removed"] == 1 and done["uploads_aborted"] == 1


def test_the_dry_run_from_the_command_line(
    capsys: pytest.CaptureFixture[str], cli: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTO_MIGRATE", "true")  # a dry run migrates nothing either
    assert main(["cleanup", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["dry_run"] is True
    assert "(dry run)" in err and "applied migration" not in err


# --- check-host on a development database ----------------------------------------------------


def test_check_host_on_a_development_database(
    capsys: pytest.CaptureFixture[str], cli: Settings
) -> None:
    """The test database's host tables are stand-ins (`migrate --with-host-tables`): without
    --dev-database that is the finding, saying the flag is what a development database needs;
    with it, one quiet line and exit 0."""
    assert main(["check-host"]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    assert "stand-ins" in out and "check DATABASE_URL" in out and "--dev-database" in out
    assert main(["check-host", "--dev-database"]) == 0
    out, err = capsys.readouterr()
    assert (
        out
        == "development database: the stand-in host tables in schema public fit what the service needs\n"
    )
    assert "WARNING" not in out + err
