"""Posts that change live on the page: a moderator's hide (and its undo) reaches every open tab
of the artist over the stream, without a reload, in a real browser (Debian's Chromium,
Playwright) against real `server.py` and worker processes, PostgreSQL and Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp

from support.seeding import Factory
from tests import page_stack
from tests.page_stack import Watch, artist, open_page
from tests.prerequisites import unmet

if TYPE_CHECKING:
    from tests.page_stack import Stack

if (why := page_stack.browser_missing()) is not None:
    unmet("browser", why, module=True)

from playwright.async_api import Browser, expect


async def test_a_moderators_hide_reaches_both_tabs_of_the_artist_without_a_reload(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, _ = await artist(factory, 20)
    moderator = await factory.user(roles=["moderator"])
    first, first_watch = await open_page(browser, stack, owner)
    # A second tab of the same browser, signed in the same way.
    second = await first.context.new_page()
    second_watch = Watch(second)
    await second.goto(f"{stack.base}/u/{owner.sqid}/posts#token={owner.token}")
    tabs = [(first, first_watch), (second, second_watch)]
    for page, watch in tabs:
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(page.locator("#loading")).to_have_text("All 20 posts loaded.")
        await watch.mark()
    shown = int(await first.locator("#posts-body tr").nth(2).get_attribute("data-id") or 0)
    row = f'#posts-body tr[data-id="{shown}"] td.hidden'
    for page, _ in tabs:
        await expect(page.locator(row)).to_have_text("—")

    body = {"action": "hide", "post_ids": [shown]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.base}/api/pmd/action",
            json=body,
            params={"target_sqid": owner.sqid},
            headers=moderator.auth,
        ) as r,
    ):
        assert r.status == 200, await r.text()
        undo = (await r.json())["undo"]
    # Each tab polls its DOM (within expect's own bound) and was never reloaded.
    for page, watch in tabs:
        await expect(page.locator(row)).to_have_text("By moderator")
        # The moderator's action is listed under "Recent actions" too, without Undo.
        listed = page.locator("#recent-list li").first
        await expect(listed).to_contain_text("by a moderator")
        assert await watch.same_document()

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base}{undo}", headers=moderator.auth) as r,
    ):
        assert r.status == 200, await r.text()
    for page, watch in tabs:
        await expect(page.locator(row)).to_have_text("—")
        assert await watch.same_document()
        assert watch.errors == []
