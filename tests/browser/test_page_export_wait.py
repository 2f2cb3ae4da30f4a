""" "Start export" in a real browser (Debian's Chromium) against real `server.py` and worker
processes: within the cooldown it is disabled, its hint saying when the next export of the kind
chosen can start (GET /api/pmd/exports' `next_export_at` and `next_incremental_export_at`, or
a 429's wait), and it is enabled again by itself when that time comes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from pmd_service.core.settings import Settings
from support.seeding import Factory
from support.stack import free_port
from tests.browser.page import Browser, Stack, expect
from tests.page_stack import artist_page, running_stack

# A full export waits a few seconds after the last one, an incremental one an hour.
SHORT_WAIT = {
    "EXPORT_COOLDOWN_SECONDS": "8",
    "EXPORT_INCREMENTAL_COOLDOWN_SECONDS": "3600",
    "EXPORT_MIN_PART_BYTES": "1024",
    "EXPORT_PART_BYTES": str(64 * 1024),
}


@pytest.fixture
async def short_wait_stack(
    settings: Settings, pool: asyncpg.Pool, redis_clean: None, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with running_stack(settings, tmp_path, free_port(), **SHORT_WAIT) as stack:
        yield stack


async def test_start_export_waits_for_the_cooldown_saying_until_when(
    browser: Browser, short_wait_stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    _, _, page, watch = await artist_page(browser, short_wait_stack, factory, 2)
    start = page.get_by_role("button", name="Start export")
    hint = page.locator("#export-hint")
    await watch.mark()
    await expect(start).to_be_enabled()
    await start.click()
    card = page.locator("#export-list > li").first
    await expect(card).to_have_attribute("data-status", "ready", timeout=90_000)
    export_id = await card.get_attribute("data-id")

    # The full export's wait is a few seconds; the incremental one's, an hour: the hint and the
    # button follow the kind chosen.
    since = page.get_by_label("Only what changed since my last export")
    await since.check()
    await expect(start).to_be_disabled()
    await expect(hint).to_contain_text("You can start the next export of what changed on ")
    await since.uncheck()
    # Once the full export's wait is over, the button is usable again without a reload.
    await expect(start).to_be_enabled(timeout=60_000)
    await expect(hint).to_have_text("")
    assert await watch.same_document()

    # Meanwhile another export counted (the page could not know): the refusal's wait disables
    # the button until then, and says when.
    await pool.execute("UPDATE exports SET created_at = now() WHERE id = $1::uuid", export_id)
    await start.click()
    await expect(page.locator("#export-message")).to_contain_text("You can export again on ")
    await expect(start).to_be_disabled()
    await expect(hint).to_contain_text("You can start the next export on ")
    await expect(page.locator("#export-list > li")).to_have_count(1)
    await expect(start).to_be_enabled(timeout=60_000)
    assert watch.errors == []
