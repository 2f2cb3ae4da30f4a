"""A part's index.html opened in Chromium from the extracted bag (`file://`), as a person
double-clicks it: every image shows, sharp (`image-rendering: pixelated`), and the page asks
for nothing outside its folder. Saves docs/screenshots/export-gallery.png when PMD_SCREENSHOTS
names a folder."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support.seeding import Factory
from tests.browser.page import Browser, Request
from tests.exports import exported_parts, seeded
from tests.page_stack import SCREENSHOTS, WIDE


async def test_a_part_opens_as_a_gallery_from_its_folder(
    aiohttp_client: AiohttpClient,
    factory: Factory,
    settings: Settings,
    pool: asyncpg.Pool,
    redis_clean: None,
    browser: Browser,
    tmp_path: Path,
) -> None:
    whole = replace(settings, export_min_part_bytes=1024, export_part_bytes=10 * 2**20)
    client = await aiohttp_client(create_app(whole))
    owner, posts = await seeded(factory, pool, whole, count=9)
    _, folders = await exported_parts(client, owner, whole, tmp_path)
    assert len(folders) == 1
    folder = folders[0].resolve()
    index = folder / "index.html"

    page = await browser.new_page(viewport=WIDE)
    asked: list[str] = []

    def note(request: Request) -> None:
        asked.append(request.url)

    page.on("request", note)
    await page.goto(index.as_uri(), wait_until="load")
    images = await page.eval_on_selector_all(
        "img",
        """imgs => imgs.map(i => ({src: i.currentSrc, ok: i.complete && i.naturalWidth > 0,
                                   natural: i.naturalWidth, shown: i.width,
                                   rendering: getComputedStyle(i).imageRendering}))""",
    )
    assert len(images) == len(posts) - 1  # the lost file is not shown
    for image in images:
        assert image["ok"], image
        assert image["rendering"] == "pixelated", image
        assert image["shown"] == 16 * image["natural"], image  # 16 px art at 256: whole steps
    # Every request the page made is a file of its own folder: nothing else, no network.
    assert asked and all(url.startswith(folder.as_uri() + "/") for url in asked), asked
    assert await page.locator("script").count() == 0
    await page.locator("details").first.evaluate("d => d.open = true")
    shot = tmp_path / "export-gallery.png"
    await page.screenshot(path=str(shot))
    assert shot.stat().st_size > 0
    if SCREENSHOTS:
        await page.screenshot(path=str(Path(SCREENSHOTS) / "export-gallery.png"), full_page=True)
    await page.close()
