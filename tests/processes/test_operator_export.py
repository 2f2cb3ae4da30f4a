"""`python -m pmd_service export --user SQID --reason TEXT --to DIR` (issue 45): an operator's
export for a data-subject request, for a deactivated user who cannot sign in to ask. The
command runs as an operator's shell runs it (`main`, in-process, its own event loop, on a
thread here) while a real arq worker builds the export; one audit row names the reason; the
parts land in DIR, whole (their SHA-256 as printed), each a bag bagit-python validates."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import asyncpg
import pytest
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.__main__ import main
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support.seeding import Factory
from tests.cli_env import operator_shell
from tests.helpers import eventually, run_worker


@pytest.fixture
def cli(
    settings: Settings, admin_database_url: str, monkeypatch: pytest.MonkeyPatch, redis_clean: None
) -> Settings:
    return operator_shell(settings, admin_database_url, monkeypatch)


async def test_an_operator_exports_a_deactivated_user_for_a_data_subject_request(
    cli: Settings,
    factory: Factory,
    pool: asyncpg.Pool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gone = await factory.user("gone", deactivated=True)
    posts = [await factory.post(gone, title=f"Work {i}") for i in range(3)]
    out = tmp_path / "requests" / "for-the-request"  # made by the command, parents too
    reason = "Data-subject request #42 (access), by email"
    command = asyncio.create_task(
        asyncio.to_thread(
            main, ["export", "--user", gone.sqid, "--reason", reason, "--to", str(out)]
        )
    )

    async def requested() -> bool:
        count = await pool.fetchval("SELECT count(*) FROM exports WHERE user_id = $1", gone.id)
        return bool(count)

    await eventually(requested)
    await run_worker(cli)
    assert await asyncio.wait_for(command, 60) == 0
    captured = capsys.readouterr()
    assert "3 of 3 artworks" in captured.err  # the progress line
    parts = json.loads(captured.out)
    assert len(parts) == 1
    (part,) = parts
    saved = out / part["file"]
    assert part["at"] == str(saved) and part["file"].endswith("-part-1-of-1.zip")
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == part["sha256"]
    with zipfile.ZipFile(saved) as archive:
        archive.extractall(tmp_path / "unzipped")
        names = archive.namelist()
    assert sorted(n for n in names if "/data/artworks/" in n) == sorted(
        f"{saved.stem.removesuffix('-of-1')}/data/artworks/{p.sqid}.png" for p in posts
    )
    (bag,) = (tmp_path / "unzipped").iterdir()
    checked = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bagit", "--validate", "."],
        cwd=bag,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    rows = await pool.fetch(
        "SELECT actor_id, action, target_id, note FROM audit_logs WHERE action = $1",
        "pmd_operator_export",
    )
    assert len(rows) == 1
    note = json.loads(rows[0]["note"])
    assert note["reason"] == reason and note["deactivated"] is True
    assert rows[0]["target_id"] == str(gone.id)


async def test_the_operators_export_leaves_the_users_own_cooldown_alone(
    cli: Settings,
    factory: Factory,
    pool: asyncpg.Pool,
    aiohttp_client: AiohttpClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The user asks for their own export right after an operator's: no 429 (the cooldown is
    a week), and `since: last` does not follow the operator's export (the user may never have
    had its parts)."""
    user = await factory.user()
    await factory.post(user)
    command = asyncio.create_task(
        asyncio.to_thread(main, ["export", "--user", user.sqid, "--reason", "ticket #7"])
    )

    async def requested() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM exports WHERE user_id = $1", user.id))

    await eventually(requested)
    await run_worker(cli)
    assert await asyncio.wait_for(command, 60) == 0
    capsys.readouterr()

    client = await aiohttp_client(create_app(replace(cli, export_cooldown_seconds=7 * 86400)))
    resp = await client.post("/api/pmd/exports", json={"since": "last"}, headers=user.auth)
    assert resp.status == 400, await resp.text()  # no export of the user's own was ready
    resp = await client.post("/api/pmd/exports", json={}, headers=user.auth)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["follows_export_id"] is None


def test_the_command_refuses_what_it_cannot_do(
    cli: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--user", "Uk"])  # --reason is required
    assert main(["export", "--user", "Uk", "--reason", "  "]) == 2
    (tmp_path / "a-file").write_text("")
    assert main(["export", "--user", "Uk", "--reason", "r", "--to", str(tmp_path / "a-file")]) == 2
    assert main(["export", "--user", "nobody", "--reason", "a request"]) == 2
    err = capsys.readouterr().err
    assert "--reason must say why" in err and "cannot make that folder" in err
    assert "no user 'nobody'" in err
    # A reason of at most 500 characters: a longer one is refused before anything is made.
    assert main(["export", "--user", "nobody", "--reason", "x" * 501]) == 2
    assert "at most 500" in capsys.readouterr().err
    assert main(["export", "--user", "nobody", "--reason", "x" * 500]) == 2
    assert "no user 'nobody'" in capsys.readouterr().err
