"""Each artwork's palette in every export part: `data/palettes/{sqid}.hex` and `.gpl`, made of
the artwork's own decoded pixels, listed by the bag's manifest and metadata.json; an artwork of
more than 256 colours keeps its place in the part and has no palette, which the item says."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from msgspec.structs import replace
from PIL import Image

from pmd_service.core.settings import Settings
from support.seeding import Factory, PostRow
from tests.exports import pixel_colours, post_export, ready_export, unpacked
from tests.helpers import Client


@pytest.fixture
def small(small: Settings) -> Settings:
    """An incremental export may follow a full one at once."""
    return replace(small, export_incremental_cooldown_seconds=0)


Ctx = dict[str, Any]  # arq's context, as the `worker_ctx` fixture gives it


def _encoded(frames: list[Image.Image], fmt: str) -> bytes:
    out = io.BytesIO()
    first, *more = frames
    if more:
        first.save(out, fmt, save_all=True, append_images=more, duration=100, loop=0)
    else:
        first.save(out, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return out.getvalue()


def _sprite() -> bytes:
    """A sprite with a see-through background (whose hidden colour is no colour of its)."""
    img = Image.new("RGBA", (8, 8), (90, 90, 90, 0))
    for x in range(8):
        img.putpixel((x, x), (255, 0, 64, 255))
        img.putpixel((7 - x, x), (20, 200, 20, 180))
    img.putpixel((4, 0), (0, 0, 0, 255))
    return _encoded([img], "PNG")


def _animation() -> bytes:
    frames = [Image.new("RGB", (6, 6), (30, 30, 120)) for _ in range(3)]
    frames[1].putpixel((1, 1), (250, 250, 0))
    frames[2].putpixel((5, 5), (250, 0, 250))
    return _encoded(frames, "GIF")


def _many_colours() -> bytes:
    img = Image.new("RGB", (20, 15))
    img.putdata([(i, 255 - i, i // 2) for i in range(300)])  # 257 distinct at least
    return _encoded([img], "PNG")


def _copies(folders: list[Path], post: PostRow) -> list[bytes]:
    return [p.read_bytes() for f in folders for p in f.glob(f"data/artworks/{post.sqid}.*")]


async def test_each_part_holds_each_artworks_palette(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner = await factory.user("palettes")
    sprite = await factory.post(owner, title="Sprite", data=_sprite())
    animation = await factory.post(owner, title="Blink", fmt="gif", data=_animation())
    webp = await factory.post(
        owner, title="Web", fmt="webp", data=_encoded([Image.new("RGB", (4, 4), (1, 2, 3))], "WEBP")
    )
    many = await factory.post(owner, title="Gradient", data=_many_colours())
    broken = await factory.post(owner, title="Broken", data=b"PIXELS:not an image")
    with_palettes: dict[str, PostRow] = {p.sqid: p for p in (sprite, animation, webp)}

    item = await ready_export(ex_client, small, owner)
    # The artwork of too many colours is in its part; only its palette is left out, and said.
    assert item["skipped"] == [
        {
            "post_id": many.id,
            "public_sqid": many.sqid,
            "reason": "too_many_colours",
            "file": "palette",
        }
    ]
    assert item["skipped_count"] == 1
    folders = await unpacked(ex_client, owner, item, tmp_path)  # bagit validates each bag

    palettes: dict[str, Path] = {}
    skipped_files = []
    for folder in folders:
        data = folder / "data"
        meta = json.loads((data / "metadata.json").read_text())
        skipped_files += meta["skipped_files"]
        lines = (folder / "manifest-sha256.txt").read_text().splitlines()
        manifest = {name: digest for digest, name in (line.split("  ", 1) for line in lines)}
        for artwork in meta["artworks"]:
            sqid = artwork["sqid"]
            assert (data / artwork["files"]["artwork"]).is_file()
            if sqid not in with_palettes:
                assert "palette" not in artwork["files"]
                assert not list(data.glob(f"palettes/{sqid}.*"))
                continue
            assert artwork["files"]["palette"] == f"palettes/{sqid}.hex"
            assert artwork["files"]["gimp_palette"] == f"palettes/{sqid}.gpl"
            for name in (f"palettes/{sqid}.hex", f"palettes/{sqid}.gpl"):
                blob = (data / name).read_bytes()
                assert manifest[f"data/{name}"] == hashlib.sha256(blob).hexdigest()
            palettes[sqid] = data / "palettes"

    assert set(palettes) == set(with_palettes)
    for sqid, post in with_palettes.items():
        assert post.data is not None
        hex_lines = (palettes[sqid] / f"{sqid}.hex").read_text().splitlines()
        # Every colour of the pixels once, the most used first (a tie by the colour).
        assert hex_lines == list(pixel_colours(post.data)), sqid
        gpl = (palettes[sqid] / f"{sqid}.gpl").read_text().splitlines()
        assert gpl[0] == "GIMP Palette" and gpl[1].startswith("Name: ") and gpl[3] == "#"
        rows = [line.split("\t")[0].split() for line in gpl[4:]]
        assert [bytes(int(v) for v in row).hex() for row in rows] == hex_lines
    assert set(pixel_colours(sprite.data or b"")) == {"ff0040", "14c814", "000000"}

    # metadata.json names both left-out palettes; an undecodable file is not the item's.
    assert sorted((s["post_id"], s["file"], s["reason"]) for s in skipped_files) == sorted(
        [(many.id, "palette", "too_many_colours"), (broken.id, "palette", "undecodable")]
    )
    # The artworks themselves, byte for byte; each palette right after its artwork.
    for post in (sprite, animation, webp, many, broken):
        assert _copies(folders, post) == [post.data]
    for part in item["parts"]:
        resp = await ex_client.get(part["download_url"], headers=owner.auth)
        assert resp.status == 200
        with zipfile.ZipFile(io.BytesIO(await resp.read())) as archive:
            names = [n.split("/data/", 1)[-1] for n in archive.namelist()]
        for sqid in set(with_palettes) & {n.rpartition("/")[2].split(".")[0] for n in names}:
            at = names.index(f"palettes/{sqid}.hex")
            # Made beside the build, after their artwork: the .gpl after the .hex.
            artwork = next(i for i, n in enumerate(names) if n.startswith(f"artworks/{sqid}."))
            assert at > artwork and names[at + 1] == f"palettes/{sqid}.gpl"


async def test_a_palette_left_out_does_not_make_its_artwork_new_again(
    ex_client: Client, factory: Factory, small: Settings
) -> None:
    """The artwork of too many colours is in the export: the next incremental one has nothing
    new to hold, rather than the same artwork again each time."""
    owner = await factory.user()
    many = await factory.post(owner, title="Gradient", data=_many_colours())
    first = await ready_export(ex_client, small, owner)
    assert [s["post_id"] for s in first["skipped"]] == [many.id]
    status, answer = await post_export(ex_client, owner, since="last")
    assert status == 200, answer
    assert answer["nothing_changed"] is True and answer["since_export_id"] == first["id"]


async def test_a_resumed_run_counts_artworks_not_their_palettes(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, worker_ctx: Ctx
) -> None:
    """A run that takes over after a part was published counts that part's artworks once:
    its progress never passes its total for a palette the part left out."""
    from pmd_service.features.exports.job import process_export

    owner = await factory.user()
    await factory.post(owner, title="Gradient", data=_many_colours())
    for i in range(2):  # each fills a part of 64 KiB alone
        await factory.post(owner, title=f"Noise {i}", data=os.urandom(40 * 1024))
    item = await ready_export(ex_client, small, owner)
    export_id = uuid.UUID(item["id"])
    assert len(item["parts"]) >= 2 and item["skipped_count"] == 1
    # The run died before publishing a part that left nothing out; another takes it over.
    await pool.execute(
        "UPDATE export_parts SET status = 'pending', file_path = NULL, file_size_bytes = NULL,"
        " sha256 = NULL, completed_at = NULL WHERE export_id = $1 AND number = ("
        " SELECT max(number) FROM export_parts WHERE export_id = $1 AND skipped = '[]')",
        export_id,
    )
    since = await pool.fetchval("SELECT coalesce(max(id), 0) FROM stream_events")
    await pool.execute(
        "UPDATE exports SET status = 'processing', claim_token = NULL, completed_at = NULL,"
        " ready_at = NULL, expires_at = NULL, progress_done = 0 WHERE id = $1",
        export_id,
    )
    assert await process_export(worker_ctx, str(export_id)) == "ready"
    rows = await pool.fetch(
        "SELECT payload FROM stream_events WHERE subject_id = $1 AND id > $2 ORDER BY id",
        export_id,
        since,
    )
    done = [r["payload"]["progress_done"] for r in rows]
    assert done and max(done) == item["artwork_count"] == 3, done
