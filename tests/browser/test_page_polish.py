"""The first minutes on the dashboard page (issue 33), in Debian's Chromium against real
`server.py` and `arq` worker processes, PostgreSQL and Redis: the selection after a batch
action, a refused token, the toolbar and panels at 1440 px and on a phone, and a download its
owner removed."""

from __future__ import annotations

import asyncpg

from support.seeding import Factory
from tests.browser.page import Browser, Locator, Stack, checked_ids, expect
from tests.page_stack import PHONE, WIDE, api, artist, broken_rows, open_page, outside_width

# The rows a person reads as one line of controls at 1440 px, in every panel.
ONE_LINE_ROWS = ", ".join(
    [
        ".top",
        ".views",
        ".toolbar",
        "#batch",
        ".pager",
        "#bdr-form button",
        "#bdr-list .bdr-head",
        "#bdr-list .bdr-buttons",
        "#export-form",
        "#export-more",
        "#export-list .export-head",
        "#export-list .bdr-buttons",
    ]
)
# The licenses of the site beside the service, with their long names.
LICENSES = [
    ("CC-BY-4.0", "Creative Commons Attribution 4.0 International"),
    ("CC-BY-NC-SA-4.0", "Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International"),
]


async def test_after_each_batch_action_the_posts_stay_selected_for_a_download(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, _ = await artist(factory, 6)
    license_id = await factory.license("CC-BY-4.0")
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 6 posts loaded.")
    boxes = page.locator("#posts-body input[type=checkbox]")
    for n in (0, 2, 4):
        await boxes.nth(n).check()
    chosen = await checked_ids(page)
    assert len(chosen) == 3
    count = page.locator("#selected-count")
    text = page.locator("#batch-text")

    # Once each batch is done, the posts are still selected, and the page says so.
    await page.get_by_role("button", name="Hide", exact=True).click()
    await expect(text).to_contain_text("3 posts hidden.")
    await expect(count).to_have_text("3")
    await expect(text).to_have_text("3 posts hidden. They stay selected.")
    await page.get_by_role("button", name="Unhide").click()
    await expect(text).to_contain_text("3 posts unhidden.")
    await expect(count).to_have_text("3")
    await expect(text).to_have_text("3 posts unhidden. They stay selected.")
    await page.locator("#license-select").select_option(str(license_id))
    await page.get_by_role("button", name="Set license").click()
    await expect(text).to_contain_text("3 posts relicensed.")
    await expect(count).to_have_text("3")
    await expect(text).to_have_text("3 posts relicensed. They stay selected.")
    await expect(page.locator("#posts-body tr.selected td.license")).to_have_text(["CC-BY-4.0"] * 3)
    assert await checked_ids(page) == chosen
    # The download of the same posts: one click.
    await page.get_by_role("button", name="Request download of 3 posts").click()
    await expect(page.locator("#bdr-list li")).to_have_count(1)
    assert [sorted(b["post_ids"]) for b in watch.posts_to("/api/pmd/bdr")] == [chosen]

    # Deleted posts leave the list, and so the selection: selected nowhere, in no other view.
    await page.get_by_role("button", name="Delete…").click()
    await page.locator("#confirm").get_by_role("button", name="Delete 3 posts").click()
    await expect(page.locator("#loading")).to_have_text("All 3 posts loaded.")
    await expect(count).to_have_text("0")
    await expect(text).to_have_text(
        "3 posts deleted. They are under “Recently deleted”, should you want them back."
    )
    await page.get_by_role("button", name="Recently deleted").click()
    await expect(page.locator("#loading")).to_have_text("All 3 posts loaded.")
    await expect(count).to_have_text("0")
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_role("button", name="Restore").click()
    await expect(page.locator("#empty")).to_be_visible()
    await expect(count).to_have_text("0")
    await expect(text).to_have_text("3 posts restored. They are under “Posts” again.")
    await page.get_by_role("button", name="Posts", exact=True).click()
    await expect(page.locator("#loading")).to_have_text("All 6 posts loaded.")
    await expect(count).to_have_text("0")
    for post_id in chosen:
        await page.locator(f'#posts-body input[data-id="{post_id}"]').check()
    assert await checked_ids(page) == chosen
    # The same posts again: the page names the download that serves them, and may insist.
    await page.get_by_role("button", name="Request download of 3 posts").click()
    await page.locator("#confirm").get_by_role("button", name="Request a new one anyway").click()
    await expect(page.locator("#bdr-list li")).to_have_count(2)
    sent = watch.posts_to("/api/pmd/bdr")
    assert [sorted(b["post_ids"]) for b in sent] == [chosen, chosen, chosen]
    assert [b["repeat"] for b in sent] == [False, False, True]
    flags = await factory.post_flags(chosen)
    assert not any(f["deleted_by_user"] or f["hidden_by_user"] for f in flags.values())
    assert watch.errors == []


async def test_a_refused_token_is_said_as_such_not_as_a_loading_failure(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, _ = await artist(factory, 3)
    page, watch = await open_page(browser, stack, owner, token=factory.token(owner.sqid, ttl=-60))
    # The first page of posts got a 401: the token is the problem, not the loading, and Retry
    # (with the same token) would not mend it.
    await expect(page.locator("#loading")).to_have_text(
        "Your posts were not loaded: the access token was not accepted. Sign in on the site "
        "again and reopen this page, or paste a new token into the “Access token” field at the "
        "top of this page."
    )
    await expect(page.get_by_role("button", name="Retry")).to_be_hidden()
    # Nor do the panels claim there is nothing: they were not loaded either.
    await expect(page.locator("#bdr-empty")).to_have_text(
        "Not loaded: the access token was not accepted."
    )
    await expect(page.locator("#exports")).to_be_hidden()
    assert watch.errors == []


async def test_the_bad_token_message_points_to_the_token_field(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, _ = await artist(factory, 40)
    page, watch = await open_page(browser, stack, owner, token=factory.token(owner.sqid, ttl=-60))
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#signin-reason")).to_contain_text(
        "paste a new access token into the “Access token” field at the top of this page"
    )
    # The field is where the message says, in view, and takes the paste at once.
    field = page.get_by_label("Access token")
    await expect(field).to_be_focused()
    await expect(field).to_be_in_viewport()
    field_box = await field.bounding_box()
    table_box = await page.locator("#posts-table").bounding_box()
    assert field_box and table_box and field_box["y"] + field_box["height"] < table_box["y"]
    assert watch.errors == []

    # Signed in, far down the page, when the token stops being accepted: the field comes into
    # view, focused, and the message says where it is.
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 40 posts loaded.")
    start = page.get_by_role("button", name="Start export")
    await start.scroll_into_view_if_needed()
    field = page.get_by_label("Access token")
    await expect(field).to_be_hidden()
    await pool.execute("UPDATE users SET deactivated = true WHERE id = $1", owner.id)
    await start.click()
    # The host's 403 for a deactivated account signs the page out saying why, as its app does.
    await expect(page.locator("#signin-reason")).to_contain_text("This account is deactivated")
    await expect(field).to_be_focused()
    await expect(field).to_be_in_viewport()
    assert watch.errors == []


async def test_one_row_each_at_1440_px_and_the_toolbar_works_on_a_phone(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, real = await artist(factory, 5)
    bulk = await factory.posts_bulk(owner, 1495)  # no files: their download fails
    license_ids = {
        title: await pool.fetchval(
            "INSERT INTO licenses (identifier, title) VALUES ($1, $2) RETURNING id",
            identifier,
            title,
        )
        for identifier, title in LICENSES
    }
    longest = license_ids[max(license_ids, key=len)]
    ready = (await api(stack, owner, "POST", "/api/pmd/bdr", {"post_ids": real[:3]}))["id"]
    failed = (await api(stack, owner, "POST", "/api/pmd/bdr", {"post_ids": bulk[:128]}))["id"]
    await api(stack, owner, "POST", "/api/pmd/exports", {})

    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 1,500 posts loaded.")
    cards = page.locator("#bdr-list")
    await expect(cards.locator(f'li[data-id="{ready}"]')).to_have_attribute(
        "data-status", "ready", timeout=90_000
    )
    await expect(cards.locator(f'li[data-id="{failed}"]')).to_have_attribute(
        "data-status", "failed", timeout=90_000
    )
    await expect(page.locator("#export-list > li .bdr-buttons")).to_be_visible(timeout=90_000)
    # The widest the toolbar gets: a four-digit count, the longest license chosen.
    await page.get_by_role("button", name="Select all loaded").click()
    await expect(page.locator("#posts-body input:checked")).to_have_count(16)
    await page.locator("#license-select").select_option(str(longest))
    assert await broken_rows(page, ONE_LINE_ROWS) == []
    assert await page.evaluate("document.documentElement.scrollWidth") <= WIDE["width"]
    await expect(page.locator("#selected-count")).to_have_text("1,500")
    # The batch line too, with its longest message.
    await page.get_by_role("button", name="Clear").click()
    await page.locator("#posts-body input[type=checkbox]").first.check()
    await page.get_by_role("button", name="Delete…").click()
    await page.locator("#confirm").get_by_role("button", name="Delete 1 post").click()
    await expect(page.locator("#batch-text")).to_contain_text("should you want them back")
    assert await broken_rows(page, ONE_LINE_ROWS) == []

    # A phone: the toolbar wraps within the screen, and its actions work.
    phone, phone_watch = await open_page(browser, stack, owner, viewport=PHONE)
    await expect(phone.locator("#loading")).to_have_text("All 1,499 posts loaded.")
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    controls = ".toolbar button, .toolbar select, .toolbar .count, .views button, .pager > *"
    assert await outside_width(phone, controls, PHONE["width"]) == []
    first = phone.locator("#posts-body tr").first
    await first.locator("input[type=checkbox]").check()
    await phone.get_by_role("button", name="Hide", exact=True).click()
    await expect(first.locator("td.hidden")).to_have_text("Hidden")
    await expect(phone.locator("#selected-count")).to_have_text("1")
    await expect(phone.get_by_role("button", name="Request download of 1 post")).to_be_enabled()
    assert watch.errors == [] and phone_watch.errors == []


async def test_a_download_its_owner_removed_shows_as_removed_not_expired(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 3)
    made = [(await api(stack, owner, "POST", "/api/pmd/bdr", {"post_ids": [i]}))["id"] for i in ids]
    removed, expired, past_due = made
    page, watch = await open_page(browser, stack, owner)

    def card(bdr_id: str) -> Locator:
        return page.locator(f'#bdr-list li[data-id="{bdr_id}"]')

    for bdr_id in made:
        await expect(card(bdr_id)).to_have_attribute("data-status", "ready", timeout=90_000)
    # The stream's snapshot is in: no redraw of the list races the clicks below.
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")

    # Its owner removes it before it expires: the status is `expired`, the API's `removed_at`
    # says it was removed, and so does the page.
    await card(removed).get_by_role("button", name="Delete file").click()
    await page.locator("#confirm").get_by_role("button", name="Delete the file").click()
    await expect(card(removed)).to_have_attribute("data-status", "expired")
    await expect(card(removed).locator(".badge")).to_have_text("Removed")
    await expect(card(removed).locator(".bdr-ended")).to_have_text("The file was removed just now.")
    await expect(card(removed).get_by_role("button")).to_have_count(0)

    # The daily clean-up expires one past its date: that one is expired.
    await pool.execute(
        "UPDATE batch_download_requests SET status = 'expired', "
        "expires_at = now() - interval '3 hours' WHERE id = $1::uuid",
        expired,
    )
    await expect(card(expired)).to_have_attribute("data-status", "expired")
    await expect(card(expired).locator(".badge")).to_have_text("Expired")
    await expect(card(expired)).to_contain_text("The file expired 3 hours ago.")

    # One past its date that the clean-up has not reached yet: expired too, nothing to click.
    await pool.execute(
        "UPDATE batch_download_requests SET expires_at = now() - interval '1 minute' "
        "WHERE id = $1::uuid",
        past_due,
    )
    # Days later the removed one's date has passed too: it still shows as removed (a guess from
    # the date alone would now call it expired).
    await pool.execute(
        "UPDATE batch_download_requests SET expires_at = now() - interval '2 days', "
        "removed_at = now() - interval '3 days' WHERE id = $1::uuid",
        removed,
    )
    page, watch2 = await open_page(browser, stack, owner)
    await expect(card(past_due)).to_have_attribute("data-status", "ready")
    await expect(card(past_due).locator(".badge")).to_have_text("Expired")
    await expect(card(past_due).get_by_role("button")).to_have_count(0)
    await expect(card(removed).locator(".badge")).to_have_text("Removed")
    await expect(card(removed)).to_contain_text("The file was removed 3 days ago.")
    await expect(card(expired).locator(".badge")).to_have_text("Expired")
    assert watch.errors == [] and watch2.errors == []
