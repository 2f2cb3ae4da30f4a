"""The page as a newcomer found it (issue 66, item 8), in Debian's Chromium against real
`server.py` and `arq` worker processes, PostgreSQL and Redis: the selection the actions and
downloads use is only what the list shows, through views, restores, deletes and changes made
elsewhere; an action by filter over the server's limit is refused before it is confirmed; at the
day's limit of downloads the request button waits for the reset, and a repeated request's
dialog defaults to the download made already."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pmd_service.core.settings import Settings
from support.seeding import Factory
from tests.browser.page import (
    Browser,
    Stack,
    alone,
    asked_to_repeat,
    checked_ids,
    expect,
    serious_violations,
)
from tests.page_stack import api, artist, open_page


async def test_nothing_stays_selected_out_of_sight_across_views(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, ids = await artist(factory, 20)
    # The oldest post, deleted: restored, it comes back on the list's second page, out of sight.
    await api(stack, owner, "POST", "/api/pmd/action", {"action": "delete", "post_ids": ids[-1:]})
    page, watch = await open_page(browser, stack, owner)
    loading = page.locator("#loading")
    count = page.locator("#selected-count")
    text = page.locator("#batch-text")
    boxes = page.locator("#posts-body input[type=checkbox]")
    await expect(loading).to_have_text("All 19 posts loaded.")

    await page.get_by_role("button", name="Recently deleted").click()
    await expect(loading).to_have_text("All 1 post loaded.")
    await boxes.first.check()
    await page.get_by_role("button", name="Restore").click()
    await expect(text).to_have_text("1 post restored. They are under “Posts” again.")
    await expect(count).to_have_text("0")
    # Back in the list, the restored post is not selected: four rows ticked are the four
    # posts the ZIP holds.
    await page.get_by_role("button", name="Posts", exact=True).click()
    await expect(loading).to_have_text("All 20 posts loaded.")
    await expect(count).to_have_text("0")
    for n in range(4):
        await boxes.nth(n).check()
    ticked = await checked_ids(page)
    await expect(count).to_have_text("4")
    await page.get_by_role("button", name="Request download of 4 posts").click()
    await expect(page.locator("#bdr-list li")).to_have_count(1)
    assert [sorted(b["post_ids"]) for b in watch.posts_to("/api/pmd/bdr")] == [ticked]

    # Deleted, they are selected nowhere: "Recently deleted" shows them unticked.
    await page.get_by_role("button", name="Delete…").click()
    await page.locator("#confirm").get_by_role("button", name="Delete 4 posts").click()
    await expect(text).to_have_text(
        "4 posts deleted. They are under “Recently deleted”, should you want them back."
    )
    await expect(count).to_have_text("0")
    await page.get_by_role("button", name="Recently deleted").click()
    await expect(loading).to_have_text("All 4 posts loaded.")
    await expect(count).to_have_text("0")
    await expect(page.get_by_role("button", name="Restore")).to_be_disabled()

    # A filter that hides a ticked row takes it out of the selection.
    await boxes.first.check()
    await expect(count).to_have_text("1")
    await page.locator("#f-q").fill("nothing like this")
    await page.get_by_role("button", name="Filter", exact=True).click()
    await expect(page.locator("#empty")).to_be_visible()
    await expect(count).to_have_text("0")
    assert watch.errors == []


async def test_a_ticked_row_gone_elsewhere_leaves_the_selection(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    """More posts than the page holds at once: a ticked row that another tab deletes leaves
    the list and the selection, though the list is not loaded to its end."""
    owner, ids = await artist(factory, 4)
    await factory.posts_bulk(owner, 3000, created_at=datetime.now(UTC) - timedelta(days=30))
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("#loading")).to_have_text(
        re.compile(r"of 3,004 posts loaded; more load as you page on\.$")
    )
    count = page.locator("#selected-count")
    await page.locator(f'#posts-body input[data-id="{ids[0]}"]').check()
    await page.locator(f'#posts-body input[data-id="{ids[1]}"]').check()
    await expect(count).to_have_text("2")

    await api(stack, owner, "POST", "/api/pmd/action", {"action": "delete", "post_ids": ids[:1]})
    await expect(page.locator(f'#posts-body tr[data-id="{ids[0]}"]')).to_have_count(0)
    await expect(count).to_have_text("1")
    await page.get_by_role("button", name="Request download of 1 post").click()
    await expect(page.locator("#bdr-list li")).to_have_count(1)
    assert [b["post_ids"] for b in watch.posts_to("/api/pmd/bdr")] == [ids[1:2]]
    assert watch.errors == []


async def test_an_action_over_the_limit_is_refused_before_it_is_asked(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    """10,019 posts match and one action changes at most 10,000 (BULK_MAX_POSTS): the page
    says so at the click, and how to get under it, instead of asking to hide 10,019."""
    owner, _ = await artist(factory, 19)
    await factory.posts_bulk(owner, 10_000, created_at=datetime.now(UTC) - timedelta(days=30))
    page, watch = await open_page(browser, stack, owner, query="?hidden=false")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await page.get_by_role("button", name="Select all 10,019 matching").click()
    await expect(page.locator("#selected-count")).to_have_text("All 10,019 matching")
    said = (
        "10,019 posts match, and one action changes at most 10,000. Narrow the filter (a tag, "
        "a license, a date range) to 10,000 or fewer and act on each part in turn. Nothing was "
        "changed."
    )
    for name in ("Hide", "Delete…", "Forbid remixes"):
        await page.locator("#batch-error").evaluate("e => { e.hidden = true; }")
        await page.get_by_role("button", name=name, exact=True).click()
        await expect(page.locator("#batch-error")).to_have_text(said)
        await expect(page.locator("#batch-error")).to_be_visible()
        await expect(page.locator("#confirm")).to_be_hidden()
    assert watch.posts_to("/api/pmd/action") == []
    assert watch.errors == []


async def test_a_limit_the_server_names_is_said_up_front_next_time(
    browser: Browser, settings: Settings, factory: Factory, redis_clean: None, tmp_path: Path
) -> None:
    async with alone(
        browser, settings, factory, tmp_path, 6, "?hidden=false", BULK_MAX_POSTS="5"
    ) as (page, watch):
        error = page.locator("#batch-error")
        hide = page.get_by_role("button", name="Hide", exact=True)
        # The page ships with the server's usual limit: this server's own comes in its refusal.
        await page.get_by_role("button", name="Select all 6 matching").click()
        await hide.click()
        await expect(error).to_contain_text(
            "The filter matches 6 posts; one action changes at most 5."
        )
        await page.get_by_role("button", name="Select all 6 matching").click()
        await hide.click()
        await expect(error).to_have_text(
            "6 posts match, and one action changes at most 5. Narrow the filter (a tag, a "
            "license, a date range) to 5 or fewer and act on each part in turn. Nothing was "
            "changed."
        )
        assert len(watch.posts_to("/api/pmd/action")) == 1
        assert watch.errors == []


# What the request button says at the day's limit: the limit, and when it resets.
AT_THE_LIMIT = re.compile(
    r"^You have made the 1 download request a day allows\. The next can be requested at "
    r".+ your time \(in \d+ (h|min)( \d+ min)?\), when the day's count starts over\.$"
)


async def test_at_the_daily_limit_the_request_button_waits_for_the_reset(
    browser: Browser, settings: Settings, factory: Factory, redis_clean: None, tmp_path: Path
) -> None:
    async with alone(browser, settings, factory, tmp_path, 3, BDR_DAILY_LIMIT="1") as (page, watch):
        boxes = page.locator("#posts-body input[type=checkbox]")
        request = page.locator("#bdr-request")
        why = page.locator("#bdr-why")
        await boxes.nth(0).check()
        await request.click()
        await expect(page.locator("#bdr-list li")).to_have_count(1)
        # Other posts: the day's one request is spent, so the button waits, whatever is
        # selected, naming the limit, without asking the server to refuse one.
        await boxes.nth(0).uncheck()
        await boxes.nth(1).check()
        await expect(request).to_be_disabled()
        await expect(why).to_have_text(AT_THE_LIMIT)
        await boxes.nth(2).check()
        await expect(request).to_have_text("Request download of 2 posts")
        await expect(request).to_be_disabled()
        await expect(why).to_have_text(AT_THE_LIMIT)

        # Reloaded: the list's count of the day says so again.
        await page.reload()
        await expect(page.locator("#loading")).to_have_text("All 3 posts loaded.")
        await expect(page.locator("#bdr-list li")).to_have_count(1)
        await page.get_by_role("button", name="Select page").click()
        await expect(request).to_be_disabled()
        await expect(why).to_have_text(AT_THE_LIMIT)
        assert len(watch.posts_to("/api/pmd/bdr")) == 1
        assert await serious_violations(page) == []
        assert watch.errors == []


async def test_a_repeated_download_defaults_to_the_one_made_already(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    _, page, watch, request = await asked_to_repeat(browser, stack, factory)
    dialog = page.locator("#confirm")
    cards = page.locator("#bdr-list li")
    # The primary button, focused, spends nothing; the one that spends a request is the other.
    reuse = dialog.get_by_role("button", name="Use that one")
    again = dialog.get_by_role("button", name="Request a new one anyway")
    await expect(reuse).to_be_focused()
    await expect(reuse).to_have_class(re.compile(r"\bprimary\b"))
    await expect(again).not_to_have_class(re.compile(r"\bprimary\b"))
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    assert await serious_violations(page) == []
    await expect(cards.first).to_have_class("bdr highlight")
    await request.click()
    await expect(reuse).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(cards).to_have_count(1)
    assert [b["repeat"] for b in watch.posts_to("/api/pmd/bdr")] == [False, False, False]
    # Spending one is still a click away.
    await request.click()
    await again.click()
    await expect(cards).to_have_count(2)
    assert [b["repeat"] for b in watch.posts_to("/api/pmd/bdr")][3:] == [False, True]
    assert watch.errors == []
