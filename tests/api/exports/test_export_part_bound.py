"""A part stays within its byte bound when every artwork brings a palette of 256 colours, the
largest a palette is: the plan counts each artwork's .hex and .gpl beside its image; and within
its count of artworks, however small they are; and once published, the worker lets it go."""

from __future__ import annotations

import gc
import io
import random
import weakref
import zipfile

import pytest
from PIL import Image

from pmd_service.core.settings import Settings
from pmd_service.features.exports import job, plan
from pmd_service.features.exports.archive import ExportPart
from pmd_service.jobs.kind import Settled
from pmd_service.zipbuild.build import BuildResult
from pmd_service.zipbuild.palette import MAX_COLOURS
from support.seeding import Factory
from tests.exports import ready_export
from tests.helpers import Client

KIB = 1024


def _full_palette(seed: int) -> bytes:
    """16x16 pixels, each its own colour: a small image with the largest palette."""
    picked = random.Random(seed).sample(range(1 << 24), MAX_COLOURS)
    img = Image.new("RGB", (16, 16))
    img.putdata([(c >> 16, (c >> 8) & 255, c & 255) for c in picked])
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


async def test_parts_of_small_artworks_with_full_palettes_stay_within_the_bound(
    ex_client: Client, factory: Factory, small: Settings
) -> None:
    owner = await factory.user()
    for i in range(30):
        await factory.post(owner, title=f"Tile {i}", data=_full_palette(i))
    part_bytes = 128 * KIB
    item = await ready_export(ex_client, small, owner, part_bytes=part_bytes)
    assert item["artwork_count"] == 30 and item["skipped"] == []
    for part in item["parts"]:
        assert part["file_size_bytes"] <= part_bytes, part
        resp = await ex_client.get(part["download_url"], headers=owner.auth)
        with zipfile.ZipFile(io.BytesIO(await resp.read())) as archive:
            hexes = [n for n in archive.namelist() if n.endswith(".hex")]
            assert len(hexes) == part["artwork_count"]
            assert all(len(archive.read(n).splitlines()) == MAX_COLOURS for n in hexes)


async def test_a_part_holds_at_most_its_count_of_artworks_however_small(
    ex_client: Client, factory: Factory, small: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan, "POSTS_A_PART", 4)
    owner = await factory.user()
    for i in range(10):
        await factory.post(owner, title=f"Dot {i}")
    item = await ready_export(ex_client, small, owner, part_bytes=small.export_max_part_bytes)
    assert [p["artwork_count"] for p in item["parts"]] == [4, 4, 2]
    assert sum(p["artwork_count"] for p in item["parts"]) == item["artwork_count"] == 10


async def test_a_published_part_is_let_go_before_the_next_is_built(
    ex_client: Client, factory: Factory, small: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part's digests (a name and hash a file) are the worker's only until it is published,
    so that its memory is bounded by a part, not by the account."""
    monkeypatch.setattr(plan, "POSTS_A_PART", 2)
    counted = job.ExportRun._published
    results: list[weakref.ref[BuildResult]] = []
    still_held: list[int] = []

    def published(run: job.ExportRun, part: ExportPart, settled: Settled) -> None:
        gc.collect()
        still_held.append(sum(r() is not None for r in results))
        results.append(weakref.ref(settled.result))
        counted(run, part, settled)

    monkeypatch.setattr(job.ExportRun, "_published", published)
    owner = await factory.user()
    for i in range(6):
        await factory.post(owner, title=f"Dot {i}")
    item = await ready_export(ex_client, small, owner, part_bytes=small.export_max_part_bytes)
    assert [p["artwork_count"] for p in item["parts"]] == [2, 2, 2]
    assert still_held == [0, 0, 0]
