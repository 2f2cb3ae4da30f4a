"""The page says what happened (issue 59), in Chromium against a real server and worker: Apply
tags clears both fields, an action's count is the posts it changed and those already so, an undo
that put nothing back says so and stays, a moderator's page names the artist and labels the
artist's downloads, an incremental export names its changes, and a repeated download is named."""

from __future__ import annotations

import asyncpg
import pytest

from support.seeding import Factory
from tests.browser.page import NO_COOLDOWN, Browser, Stack, asked_to_repeat, expect
from tests.page_stack import api, artist, artist_page, loaded_page, open_page


@pytest.fixture
def stack_env() -> dict[str, str]:
    return NO_COOLDOWN


async def test_tags_fields_clear_and_counts_say_what_changed(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids, page, watch = await loaded_page(browser, stack, factory, 4)
    await api(stack, owner, "POST", "/api/pmd/action", {"action": "hide", "post_ids": ids[:1]})
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_role("button", name="Hide", exact=True).click()
    # One count: the posts changed, then those already so; the history says the same.
    await expect(page.locator("#batch-text")).to_contain_text("3 posts hidden; 1 already hidden")
    recent = page.locator("#recent-list li")
    await expect(recent.first).to_contain_text("Hid 3 posts; 1 already hidden")

    await page.locator("#tags-add").fill("wip")
    await page.locator("#tags-remove").fill("old")
    await page.get_by_role("button", name="Apply tags").click()
    await expect(page.locator("#batch-text")).to_contain_text("4 posts retagged")
    await expect(page.locator("#tags-add")).to_have_value("")
    await expect(page.locator("#tags-remove")).to_have_value("")
    # A later "remove" alone never adds the earlier tag again.
    await page.locator("#tags-remove").fill("wip")
    await page.get_by_role("button", name="Apply tags").click()
    await expect(page.locator("#batch-text")).to_contain_text("4 posts retagged")
    assert watch.posts_to("/api/pmd/action")[-1]["add"] == []
    tags = await pool.fetch("SELECT hashtags FROM posts WHERE id = ANY($1)", ids)
    assert all("wip" not in r["hashtags"] for r in tags)

    # The hide's undo, after the posts were unhidden elsewhere: nothing to undo, and it stays.
    await api(stack, owner, "POST", "/api/pmd/action", {"action": "unhide", "post_ids": ids})
    await page.reload()
    hid = page.locator("#recent-list li[data-action='hide']").first
    # The history keeps both counts (the server's), and an action that found none says none.
    await expect(hid).to_contain_text("Hid 3 posts; 1 already hidden")
    unhid = page.locator("#recent-list li[data-action='unhide']")
    await expect(unhid).to_contain_text("Unhid 4 posts")
    await expect(unhid).not_to_contain_text("already")
    await hid.get_by_role("button", name="Undo").click()
    await expect(page.locator("#toasts")).to_contain_text("Nothing to undo: all 3 posts")
    await expect(hid.get_by_role("button", name="Undo")).to_be_visible()
    assert watch.errors == []


async def test_a_moderators_page_names_the_artist_and_the_artists_downloads(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, ids = await artist(factory, 2)
    await api(stack, owner, "POST", "/api/pmd/bdr", {"post_ids": ids})
    moderator = await factory.user(roles=["user", "moderator"])
    page, watch = await open_page(browser, stack, owner, token=moderator.token)
    handle = f"@{owner.handle}"
    await expect(page.locator("h1")).to_have_text(f"{handle}'s posts")
    await expect(page.locator("#who")).to_contain_text(f"{handle}'s posts")
    await expect(page.locator("#downloads-title")).to_have_text(f"{handle}'s downloads")
    card = page.locator("#bdr-list li").first
    await expect(card).to_contain_text(f"{handle}'s download of 2 artworks")
    await expect(card).to_have_attribute("data-status", "ready", timeout=60_000)
    await expect(card.get_by_role("button", name=f"Download {handle}'s ZIP")).to_be_visible()
    await expect(card.get_by_role("button", name=f"Delete {handle}'s file")).to_be_visible()
    assert watch.errors == []


async def test_a_repeated_download_is_named_and_can_be_insisted_on(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    ids, page, watch, request = await asked_to_repeat(browser, stack, factory)
    await page.get_by_role("button", name="Use that one").click()
    cards = page.locator("#bdr-list li")
    await expect(cards).to_have_count(1)
    await expect(cards.first).to_have_class("bdr highlight")
    await request.click()
    await page.get_by_role("button", name="Request a new one anyway").click()
    await expect(cards).to_have_count(2)
    sent = watch.posts_to("/api/pmd/bdr")
    assert [body["repeat"] for body in sent] == [False, False, False, True]
    assert sorted(sent[-1]["post_ids"]) == sorted(ids)


async def test_an_incremental_export_names_its_changes(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids, page, watch = await artist_page(browser, stack, factory, 3)
    full = await api(stack, owner, "POST", "/api/pmd/exports", {})
    card = page.locator(f"#export-list li[data-id='{full['id']}']")
    await expect(card).to_have_attribute("data-status", "ready", timeout=60_000)
    # Since: one artwork added, one changed, one deleted.
    await factory.post(owner)
    await pool.execute("UPDATE posts SET metadata_modified_at = now() WHERE id = $1", ids[0])
    await api(stack, owner, "POST", "/api/pmd/action", {"action": "delete", "post_ids": ids[1:2]})
    await page.get_by_label("Only what changed since my last export").check()
    await page.get_by_role("button", name="Start export").click()
    latest = page.locator("#export-list li").first
    await expect(latest).to_have_attribute("data-status", "ready", timeout=60_000)
    await expect(latest.locator(".export-changes")).to_contain_text(
        "1 artwork added, 1 changed, 1 removed"
    )
    await expect(latest.locator(".export-changes")).to_contain_text("Changes since your export of")
    assert watch.errors == []
