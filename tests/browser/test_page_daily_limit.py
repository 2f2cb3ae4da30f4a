"""The request button knows the day's download limit when the page opens (issue 75): a fresh
tab, the owner's or a moderator's, waits for the reset before any request is refused."""

from __future__ import annotations

import re
from pathlib import Path

from pmd_service.core.settings import Settings
from support.seeding import Factory
from support.stack import free_port
from tests.browser.page import Browser, expect, serious_violations
from tests.page_stack import api, artist, open_page, running_stack

# What the request button says at the day's limit: the limit, and when it resets.
AT_THE_LIMIT = re.compile(r"^You have made the 1 download request a day allows\. ")


async def test_a_fresh_tab_knows_the_day_is_used_up_before_asking(
    browser: Browser, settings: Settings, factory: Factory, redis_clean: None, tmp_path: Path
) -> None:
    async with running_stack(settings, tmp_path, free_port(), BDR_DAILY_LIMIT="1") as stack:
        owner, ids = await artist(factory, 2)
        other, [theirs] = await artist(factory, 1)
        moderator = await factory.user(roles=["user", "moderator"])
        # Another tab, or a script, spent the day's one request of each.
        await api(stack, owner, "POST", "/api/pmd/bdr", {"post_ids": ids[:1]})
        await api(
            stack,
            moderator,
            "POST",
            "/api/pmd/bdr",
            {"post_ids": [theirs], "target_sqid": other.sqid},
        )

        for token in (None, moderator.token):
            page, watch = await open_page(browser, stack, owner, token=token)
            await expect(page.locator("#loading")).to_have_text("All 2 posts loaded.")
            await page.get_by_role("button", name="Select page").click()
            request = page.locator("#bdr-request")
            await expect(request).to_have_text("Request download of 2 posts")
            await expect(request).to_be_disabled()
            await expect(page.locator("#bdr-why")).to_have_text(AT_THE_LIMIT)
            assert watch.posts_to("/api/pmd/bdr") == []
            assert await serious_violations(page) == []
            assert watch.errors == []

        # An artist who made none today finds the button live.
        fresh, _ = await artist(factory, 2)
        page, watch = await open_page(browser, stack, fresh)
        await expect(page.locator("#loading")).to_have_text("All 2 posts loaded.")
        await page.get_by_role("button", name="Select page").click()
        await expect(page.locator("#bdr-request")).to_be_enabled()
        assert watch.errors == []
