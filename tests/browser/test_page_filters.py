"""The page's filter bar, "Select all N matching", the count it asks to confirm, Undo, and the
question before a license is removed, in a real browser (Debian's Chromium, Playwright)
against real `server.py` and worker processes, PostgreSQL and Redis."""

from __future__ import annotations

import asyncpg

from support.seeding import Factory
from tests.browser.page import Browser, Stack, expect, hidden
from tests.page_stack import artist, loaded_page, open_page, shot


async def test_hide_everything_a_filter_matches_then_undo(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 30)
    wip = ids[:20]
    await pool.execute("UPDATE posts SET hashtags = '{wip}' WHERE id = ANY($1)", wip)
    # The filter comes from the page's URL, as a shared link carries it.
    page, watch = await open_page(browser, stack, owner, query="?hashtag=wip")
    await expect(page.locator("#f-hashtag")).to_have_value("wip")
    await expect(page.locator("#loading")).to_have_text("All 20 posts loaded.")
    await page.get_by_role("button", name="Select all 20 matching").click()
    await expect(page.locator("#selected-count")).to_have_text("All 20 matching")

    # More than a page: the count is asked first.
    await page.get_by_role("button", name="Hide", exact=True).click()
    dialog = page.locator("#confirm")
    await expect(dialog).to_contain_text("Hide 20 posts?")
    await shot(page, "hide-all-matching")
    await dialog.get_by_role("button", name="Hide 20 posts").click()
    await expect(page.locator("#batch-text")).to_have_text("20 posts hidden. They stay selected.")
    assert await hidden(pool, ids) == sorted(wip)
    action = page.locator("#recent-list li").first
    await expect(action).to_contain_text("Hid 20 posts")
    await expect(action.get_by_role("button", name="Undo")).to_be_visible()
    # The list shows what the server holds now.
    await expect(page.locator("#loading")).to_have_text("All 20 posts loaded.")
    await expect(page.locator("#posts-body td.hidden")).to_have_text(["Hidden"] * 16)
    await shot(page, "filtered-hidden-with-undo")

    await action.get_by_role("button", name="Undo").click()
    await expect(action).to_contain_text("Undone")
    await expect(page.locator("#posts-body td.hidden")).to_have_text(["—"] * 16)
    assert await hidden(pool, ids) == []
    assert watch.errors == []


async def test_a_count_changed_meanwhile_is_said_and_nothing_changes(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids, page, _ = await loaded_page(browser, stack, factory, 20)
    await page.locator("#f-q").fill("#1")
    await page.get_by_role("button", name="Filter", exact=True).click()
    assert "q=%231" in page.url
    await expect(page.locator("#loading")).to_have_text("All 11 posts loaded.")
    await page.get_by_role("button", name="Select all 11 matching").click()
    # Another tab adds a matching post before the action runs.
    await factory.post(owner, title="Slime #100", data=None)
    await page.get_by_role("button", name="Hide", exact=True).click()
    await expect(page.locator("#batch-error")).to_contain_text("not the 11 approved")
    assert await hidden(pool, ids) == []
    await expect(page.locator("#loading")).to_have_text("All 12 posts loaded.")


async def test_removing_a_license_asks_first(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, _ = await artist(factory, 3)
    cc = await factory.license("CC-BY-4.0")
    await pool.execute("UPDATE posts SET license_id = $1", cc)
    page, _ = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 3 posts loaded.")
    await page.get_by_role("button", name="Select page").click()
    await page.locator("#license-select").select_option("")
    await page.get_by_role("button", name="Set license").click()
    dialog = page.locator("#confirm")
    await expect(dialog).to_contain_text("Remove the license of 3 posts?")
    await dialog.get_by_role("button", name="Cancel").click()
    assert {r["license_id"] for r in await pool.fetch("SELECT license_id FROM posts")} == {cc}
    await page.get_by_role("button", name="Set license").click()
    await dialog.get_by_role("button", name="Remove the license of 3 posts").click()
    await expect(page.locator("#posts-body td.license")).to_have_text(["—"] * 3)


async def test_tags_and_remix_permission_of_selected_posts(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, _ = await artist(factory, 3)
    await pool.execute("UPDATE posts SET hashtags = '{old,keep}'")
    await pool.execute("UPDATE posts SET mod_hashtags = '{keep}'")
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 3 posts loaded.")
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_label("Add tags").fill("#WIP, cats")
    await page.get_by_label("Remove tags").fill("old, keep")
    await page.get_by_role("button", name="Apply tags").click()
    await expect(page.locator("#batch-text")).to_have_text("3 posts retagged. They stay selected.")
    tags = {r["hashtags"] for r in await pool.fetch("SELECT hashtags::text FROM posts")}
    assert tags == {"{keep,wip,cats}"}  # a moderator's tag stays

    await expect(page.locator("#posts-body td.remix")).to_have_text(["Yes"] * 3)
    await page.get_by_role("button", name="Forbid remixes").click()
    await expect(page.locator("#posts-body td.remix")).to_have_text(["No"] * 3)
    assert {r["remixable"] for r in await pool.fetch("SELECT remixable FROM posts")} == {False}
    # The newest action first: the remix permission's.
    newest = page.locator("#recent-list li").first
    await expect(newest).to_contain_text("Changed the remix permission of 3 posts")
    await newest.get_by_role("button", name="Undo").click()
    await expect(newest).to_contain_text("Undone")
    await expect(page.locator("#posts-body td.remix")).to_have_text(["Yes"] * 3)
    assert watch.errors == []


async def test_a_choice_applies_as_it_changes_and_typed_text_waits_for_filter(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    _, ids, page, watch = await loaded_page(browser, stack, factory, 20)
    await pool.execute("UPDATE posts SET hidden_by_user = true WHERE id = ANY($1)", ids[:5])
    await watch.mark()

    # Typing does not reload the list: well past the pause a choice waits, nothing was asked.
    await page.locator("#f-q").fill("Slime")
    await page.wait_for_timeout(1500)
    assert [u for u in watch.urls("/api/pmd/posts") if "q=" in u] == []
    await expect(page.locator("#loading")).to_have_text("All 20 posts loaded.")
    await page.locator("#f-q").fill("")

    # A menu's choice reloads the list by itself, no "Filter" pressed; two quick choices end
    # on the list of the last one.
    await page.locator("#f-hidden").select_option("false")
    await page.locator("#f-hidden").select_option("true")
    await expect(page.locator("#loading")).to_have_text("All 5 posts loaded.")
    assert "hidden=true" in page.url
    shown = {
        int(i or 0)
        for i in await page.locator("#posts-body tr").evaluate_all(
            "(rows) => rows.map((r) => r.dataset.id)"
        )
    }
    assert shown == set(ids[:5])

    # A date too; and "Reset filter" shows every post again.
    await page.locator("#f-created_after").fill("2000-01-01")
    await expect(page.locator("#loading")).to_have_text("All 5 posts loaded.")
    await page.wait_for_function("() => location.search.includes('created_after=2000-01-01')")
    await page.locator("#f-reset").click()
    await expect(page.locator("#loading")).to_have_text("All 20 posts loaded.")
    assert await watch.same_document()
    assert watch.errors == []
