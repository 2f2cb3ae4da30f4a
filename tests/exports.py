"""What the export tests share: an export built by the worker, its parts checked by bagit."""

from __future__ import annotations

import asyncio
import io
import random
import sys
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from PIL import Image

from pmd_service.core.settings import Settings
from pmd_service.dev.demo import pixel_art
from support.seeding import Factory, PostRow, UserRow
from tests.helpers import Client, captured, run_worker


async def plan_parts(
    conn: asyncpg.Pool | PoolConnectionProxy, export_id: Any, parts: int, artworks: int, size: int
) -> None:
    """Parts 1 to `parts` of an export, as planned: `artworks` artworks and `size` bytes each."""
    for n in range(1, parts + 1):
        await conn.execute(
            "INSERT INTO export_parts (export_id, number, post_ids, artwork_count,"
            " estimated_bytes) VALUES ($1, $2, '{1}', $3, $4)",
            export_id,
            n,
            artworks,
            size,
        )


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
        bagit = [sys.executable, "-m", "bagit", "--validate", "."]
        checked = await asyncio.to_thread(captured, bagit, cwd=folder)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        folders.append(folder)
    return folders


NASTY = '<script>alert("x")</script> & "quotes"'


async def seeded(
    factory: Factory, pool: asyncpg.Pool, settings: Settings, count: int = 6
) -> tuple[UserRow, list[PostRow]]:
    """`count` (at least 6) artworks, then one whose file is lost (the last)."""
    owner = await factory.user("pixelartist")
    fan = await factory.user("fan")
    cc = await factory.license("CC-BY-4.0")
    posts = []
    for i in range(count):
        posts.append(
            await factory.post(
                owner,
                title=NASTY if i == 2 else f"Sprite {i}",
                data=pixel_art(random.Random(i), 16, 1, "png"),
                width=16,
                height=16,
                hashtags=["pixelart", f"n{i}"],
                description="A small one" if i == 1 else None,
                license_id=cc if i % 2 else None,
            )
        )
    await pool.execute("UPDATE posts SET hidden_by_user = true WHERE id = $1", posts[1].id)
    await pool.execute("UPDATE posts SET hidden_by_mod = true WHERE id = $1", posts[3].id)
    for n in range(12):
        await factory.comment(posts[0], fan, f"comment {n} <b>bold?</b>")
    await factory.reaction(posts[0], fan, "🔥")
    await factory.reaction(posts[0], owner, "🔥")
    await factory.reaction(posts[4], fan, "❤️")
    layers = settings.vault_path / "mkpx" / posts[5].shard / f"{posts[5].storage_key}.mkpx"
    layers.parent.mkdir(parents=True, exist_ok=True)
    layers.write_bytes(b"MKPX\x01layers")
    await pool.execute(
        "UPDATE posts SET mkpx_file_bytes = 11, mkpx_attached_at = now() WHERE id = $1",
        posts[5].id,
    )
    missing = await factory.post(owner, title="lost file", data=None)
    return owner, [*posts, missing]


async def exported_parts(
    client: Client, owner: UserRow, settings: Settings, into: Path
) -> tuple[dict[str, Any], list[Path]]:
    item = await ready_export(client, settings, owner)
    return item, await unpacked(client, owner, item, into)


def pixel_colours(image: bytes) -> tuple[str, ...]:
    """What the image's palette must hold: the colours of the pixels Pillow decodes (every
    frame, the fully transparent left out), the most used first, a tie by the colour."""
    used: Counter[str] = Counter()
    with Image.open(io.BytesIO(image)) as img:
        for index in range(getattr(img, "n_frames", 1)):
            img.seek(index)
            data = img.convert("RGBA").tobytes()
            used.update(data[i : i + 3].hex() for i in range(0, len(data), 4) if data[i + 3])
    return tuple(sorted(used, key=lambda c: (-used[c], c)))
