"""The page's side of exports an artist keeps (issue 45), in Chromium against a real server and
worker: the layers option of a download, the upscaled, "only what changed" and repeat options
of an export, the schedule shown and stopped, "nothing changed" said plainly, and the help
text that tells each part opens as a gallery. Saves docs/screenshots/export-schedule.png when
PMD_SCREENSHOTS names a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.seeding import Factory
from tests.browser.page import NO_COOLDOWN, Browser, Stack, expect
from tests.page_stack import SCREENSHOTS, artist_page


@pytest.fixture
def stack_env() -> dict[str, str]:
    return NO_COOLDOWN


async def test_the_export_panel_repeats_stops_and_says_nothing_changed(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    _, ids, page, watch = await artist_page(browser, stack, factory, 3)
    panel = page.locator("#exports")
    await expect(panel).to_be_visible()
    await expect(panel).to_contain_text("opens as a gallery from its index.html")

    # A download asks for the layers files unless told not to.
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_label("Include layers files (.mkpx)").uncheck()
    await page.get_by_role("button", name="Request download of 3 posts").click()
    await expect(page.locator("#bdr-list li")).to_have_count(1)
    assert watch.posts_to("/api/pmd/bdr")[-1]["include_layers"] is False

    # A recurring export with the upscaled copies: the schedule is shown.
    await page.get_by_label("With the site's upscaled copies").check()
    await page.get_by_label("Repeat").select_option(label="Every 2 months, for a year")
    await page.get_by_role("button", name="Start export").click()
    sent = watch.posts_to("/api/pmd/exports")[-1]
    assert sent["repeat_every_days"] == 60 and sent["repeat_times"] == 6
    assert sent["include_upscaled"] is True and "since" not in sent
    schedule = page.locator("#export-schedule")
    await expect(schedule).to_be_visible()
    await expect(schedule).to_contain_text("Repeats every 60 days")
    await expect(schedule).to_contain_text("5 exports to come")
    card = page.locator("#export-list li").first
    await expect(card).to_have_attribute("data-status", "ready", timeout=60_000)
    await expect(card).to_contain_text("upscaled copies")
    if SCREENSHOTS:
        await page.evaluate("document.querySelectorAll('.toast').forEach((t) => t.remove())")
        await panel.scroll_into_view_if_needed()
        await page.screenshot(path=str(Path(SCREENSHOTS) / "export-schedule.png"))

    # Stopped: the schedule goes, the export made stays.
    await page.get_by_role("button", name="Stop repeating").click()
    await expect(schedule).to_be_hidden()
    await expect(page.locator("#toasts")).to_contain_text("will not repeat any more")
    await expect(page.locator("#export-list li")).to_have_count(1)

    # Only what changed, with nothing changed: said, and no export made.
    await page.get_by_label("Repeat").select_option(label="Once")
    await page.get_by_label("Only what changed since my last export").check()
    await page.get_by_role("button", name="Start export").click()
    assert watch.posts_to("/api/pmd/exports")[-1]["since"] == "last"
    message = page.locator("#export-message")
    await expect(message).to_contain_text("Nothing changed since export")
    await expect(message).to_have_attribute("data-kind", "info")
    await expect(page.locator("#export-list li")).to_have_count(1)
    assert not watch.errors
    assert ids
