"""What the export tests share: an export built by the worker, its parts checked by bagit."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from pmd_service.core.settings import Settings
from support.seeding import UserRow
from tests.helpers import Client, run_worker


async def post_export(client: Client, user: UserRow, **body: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/api/pmd/exports", json=body, headers=user.auth)
    answer: dict[str, Any] = await resp.json()
    return resp.status, answer


async def ready_export(
    client: Client, settings: Settings, user: UserRow, **body: Any
) -> dict[str, Any]:
    status, item = await post_export(client, user, **body)
    assert status == 202, item
    await run_worker(settings)
    resp = await client.get(f"/api/pmd/exports/{item['id']}", headers=user.auth)
    ready: dict[str, Any] = await resp.json()
    assert ready["status"] == "ready", ready
    return ready


async def unpacked(client: Client, user: UserRow, item: dict[str, Any], into: Path) -> list[Path]:
    folders = []
    for part in item["parts"]:
        resp = await client.get(part["download_url"], headers=user.auth)
        with zipfile.ZipFile(io.BytesIO(await resp.read())) as archive:
            archive.extractall(into)
        folder = into / f"makapix-export-{item['id'][:8]}-part-{part['number']}"
        checked = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bagit", "--validate", "."],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        folders.append(folder)
    return folders
