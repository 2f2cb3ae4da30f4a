"""The page's "Recent actions" in a real browser (Debian's Chromium, Playwright) against real
`server.py` and worker processes, PostgreSQL and Redis: the undo window's actions survive a
reload and come from any device, Undo puts the posts back, and a moderator's action shows as
such, without Undo, on the artist's page."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg

from support.seeding import Factory, UserRow
from tests.browser.page import Browser, Stack, expect, hidden
from tests.page_stack import artist, loaded_page, open_page


async def _act(stack: Stack, user: UserRow, body: dict[str, Any]) -> Any:
    """A bulk action through the API, as another device would."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base}/api/pmd/action", json=body, headers=user.auth) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.json()


async def test_an_action_keeps_its_undo_after_a_reload_and_undo_puts_the_posts_back(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids, page, watch = await loaded_page(browser, stack, factory, 4)
    recent = page.locator("#recent-list li")
    await expect(page.locator("#recent-empty")).to_have_text(
        "No bulk actions in the last 24 hours."
    )
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_role("button", name="Hide", exact=True).click()
    await expect(page.locator("#batch-text")).to_contain_text("4 posts hidden")
    await expect(recent).to_have_count(1)
    assert await hidden(pool, ids, by_mod=True) == sorted(ids)

    # Another device deletes one post meanwhile; the reload shows both, newest first.
    await _act(stack, owner, {"action": "delete", "post_ids": ids[:1]})
    await page.reload()
    await expect(page.locator("#loading")).to_have_text("All 3 posts loaded.")
    await expect(recent).to_have_count(2)
    await expect(recent.nth(0)).to_contain_text("Deleted 1 post")
    await expect(recent.nth(1)).to_contain_text("Hid 4 posts")

    await recent.nth(1).get_by_role("button", name="Undo").click()
    await expect(recent.nth(1)).to_contain_text("Undone")
    await expect(recent.nth(1).get_by_role("button", name="Undo")).to_have_count(0)
    # All four come back visible, the one deleted since too (its delete left its flag as is).
    await expect(page.locator("#posts-body td.hidden")).to_have_text(["—"] * 3)
    assert await hidden(pool, ids, by_mod=True) == []
    assert watch.errors == []


async def test_one_click_over_128_posts_is_one_entry_with_one_undo_that_puts_back_all(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    _, ids, page, watch = await loaded_page(browser, stack, factory, 300)
    recent = page.locator("#recent-list li")
    await page.get_by_role("button", name="Select all loaded").click()
    await page.get_by_role("button", name="Hide", exact=True).click()
    await page.locator("#confirm").get_by_role("button", name="Hide 300 posts").click()
    await expect(page.locator("#batch-text")).to_contain_text("300 posts hidden in 3 batches")
    sent = watch.posts_to("/api/pmd/action")
    assert [len(b["post_ids"]) for b in sent] == [128, 128, 44]
    assert len({b["click_id"] for b in sent}) == 1

    # Three batches, one click: one entry, with one Undo for all 300 posts.
    await expect(recent).to_have_count(1)
    await expect(recent).to_contain_text("Hid 300 posts")
    assert await hidden(pool, ids) == sorted(ids)
    await recent.get_by_role("button", name="Undo").click()
    await expect(recent).to_contain_text("Undone")
    await expect(recent.get_by_role("button", name="Undo")).to_have_count(0)
    assert await hidden(pool, ids, by_mod=True) == []

    # The next click is an entry of its own.
    await page.get_by_role("button", name="Select all loaded").click()
    await page.get_by_role("button", name="Hide", exact=True).click()
    await page.locator("#confirm").get_by_role("button", name="Hide 300 posts").click()
    await expect(page.locator("#batch-text")).to_contain_text("300 posts hidden in 3 batches")
    await expect(recent).to_have_count(2)
    assert len({b["click_id"] for b in watch.posts_to("/api/pmd/action")}) == 2
    assert watch.errors == []


async def test_a_moderators_action_shows_on_the_artists_page_without_undo(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 2)
    moderator = await factory.user(roles=["user", "moderator"])
    await _act(stack, moderator, {"action": "hide", "post_ids": ids, "target_sqid": owner.sqid})

    page, watch = await open_page(browser, stack, owner)
    item = page.locator("#recent-list li")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("Hid 2 posts by a moderator")
    await expect(item.get_by_role("button", name="Undo")).to_have_count(0)

    # The moderator, on the artist's page, undoes it there.
    mod_page, mod_watch = await open_page(browser, stack, owner, token=moderator.token)
    mod_item = mod_page.locator("#recent-list li")
    await expect(mod_item).to_contain_text("Hid 2 posts by you")
    await mod_item.get_by_role("button", name="Undo").click()
    await expect(mod_item).to_contain_text("Undone")
    assert await hidden(pool, ids, by_mod=True) == []
    assert watch.errors == [] and mod_watch.errors == []
