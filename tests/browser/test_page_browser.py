"""The dashboard page in a real browser (Debian's Chromium, driven by Playwright) against real
`server.py` and `arq` worker processes, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from pmd_service.core.settings import Settings
from support.seaweed import Seaweed
from support.seeding import Factory, UserRow
from support.stack import free_port
from tests import page_stack
from tests.browser.page import Browser, Locator, Page, Stack, expect, limit_reached
from tests.page_stack import PHONE, WIDE, artist, artist_page, loaded_page, open_page, shot


async def request_bdr(stack: Stack, owner: UserRow, body: dict[str, Any]) -> str:
    """A download request made through the API, as another tab would; its id."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base}/api/pmd/bdr", json=body, headers=owner.auth) as r,
    ):
        assert r.status == 202, await r.text()
        bdr_id: str = (await r.json())["id"]
        return bdr_id


async def saved_zip(page: Page, card: Locator) -> list[str]:
    """Click the card's Download button: the ZIP the browser saved (valid), its entry names."""
    async with page.expect_download() as info:
        await card.get_by_role("button", name="Download ZIP").click()
    download = await info.value
    assert download.suggested_filename.startswith("makapix-artworks-")
    data = await asyncio.to_thread(Path(await download.path()).read_bytes)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return archive.namelist()


async def record_texts(page: Page, selector: str) -> None:
    """Keep every text `selector` shows in window.seen, however briefly it shows it."""
    await page.evaluate(
        """(sel) => {
            window.seen = [];
            const node = document.querySelector(sel);
            new MutationObserver(() => window.seen.push(node.textContent))
                .observe(node, {childList: true, characterData: true, subtree: true});
        }""",
        selector,
    )


async def test_select_150_posts_and_hide_them_in_two_batches(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    _, ids, page, watch = await loaded_page(browser, stack, factory, 150)
    await expect(page.locator("#page-info")).to_have_text("Page 1 of 10")
    await expect(page.locator("#posts-body tr")).to_have_count(16)

    # Keyboard: focus the first row's box and tick it with Space.
    await page.locator("#posts-body input[type=checkbox]").first.focus()
    await page.keyboard.press("Space")
    await expect(page.locator("#selected-count")).to_have_text("1")

    await page.get_by_role("button", name="Select all loaded").click()
    await expect(page.locator("#selected-count")).to_have_text("150")
    # The selection survives sorting and paging.
    await page.get_by_role("button", name="Title").click()
    await page.get_by_role("button", name="Next page").click()
    await expect(page.locator("#page-info")).to_have_text("Page 2 of 10")
    await expect(page.locator("#selected-count")).to_have_text("150")
    await expect(page.locator("#posts-body input:checked")).to_have_count(16)
    # Above 128 the download button is off and says why.
    await expect(page.locator("#bdr-request")).to_be_disabled()
    await expect(page.locator("#bdr-why")).to_contain_text("at most 128 posts; 150 are selected")

    await record_texts(page, "#batch-text")
    await page.get_by_role("button", name="Hide", exact=True).click()
    # More than a page of posts: the count is asked first.
    await page.locator("#confirm").get_by_role("button", name="Hide 150 posts").click()
    await expect(page.locator("#batch-text")).to_have_text(
        "150 posts hidden in 2 batches. They stay selected."
    )
    seen = await page.evaluate("window.seen")
    assert "Hiding 150 posts: batch 1 of 2" in seen
    assert "Hiding 150 posts: batch 2 of 2" in seen
    sent = watch.posts_to("/api/pmd/action")
    assert [len(b["post_ids"]) for b in sent] == [128, 22]
    assert sorted(i for b in sent for i in b["post_ids"]) == sorted(ids)
    assert all(b["action"] == "hide" for b in sent)

    flags = await factory.post_flags(ids)
    assert all(f["hidden_by_user"] for f in flags.values())
    await expect(page.locator("#selected-count")).to_have_text("150")
    await expect(page.locator("#posts-body td.hidden")).to_have_text(["Hidden"] * 16)
    await shot(page, "hidden-in-two-batches")
    assert watch.errors == []


async def test_a_failed_batch_stops_and_says_what_did_not_happen(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    _, ids, page, watch = await loaded_page(browser, stack, factory, 150)
    await page.get_by_role("button", name="Select all loaded").click()
    # The oldest post (in the second batch) is deleted elsewhere after the page loaded it.
    await pool.execute("UPDATE posts SET deleted_by_user = true WHERE id = $1", ids[-1])

    await page.get_by_role("button", name="Hide", exact=True).click()
    await page.locator("#confirm").get_by_role("button", name="Hide 150 posts").click()
    error = page.locator("#batch-error")
    await expect(error).to_contain_text("Batch 2 of 2 failed:")
    # The post refused is named by its title, not its id.
    await expect(error).to_contain_text("“Mushroom #150” is not one of this user's artworks")
    await expect(error).to_contain_text(
        "128 posts hidden; 22 posts were not hidden and are still selected."
    )
    await expect(page.locator("#selected-count")).to_have_text("22")
    flags = await factory.post_flags(ids)
    assert sum(f["hidden_by_user"] for f in flags.values()) == 128
    assert not any(flags[i]["hidden_by_user"] for i in ids[128:])
    await shot(page, "failed-batch")
    assert watch.errors == []


async def test_delete_asks_first_then_restore_from_recently_deleted(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    _, ids, page, watch = await loaded_page(browser, stack, factory, 20)
    boxes = page.locator("#posts-body input[type=checkbox]")
    await boxes.nth(0).check()
    await boxes.nth(1).check()

    await page.get_by_role("button", name="Delete…").click()
    dialog = page.locator("#confirm")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Delete 2 posts?")
    await dialog.get_by_role("button", name="Cancel").click()
    assert not any(f["deleted_by_user"] for f in (await factory.post_flags(ids)).values())

    await page.get_by_role("button", name="Delete…").click()
    await dialog.get_by_role("button", name="Delete 2 posts").click()
    await expect(page.locator("#loading")).to_have_text("All 18 posts loaded.")
    deleted = [i for i, f in (await factory.post_flags(ids)).items() if f["deleted_by_user"]]
    assert sorted(deleted) == sorted(ids[:2])

    await page.get_by_role("button", name="Recently deleted").click()
    await expect(page.locator("#loading")).to_have_text("All 2 posts loaded.")
    await expect(page.locator("#posts-body .days-left")).to_have_text(
        ["Deleted just now · 7 days left"] * 2
    )
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_role("button", name="Restore").click()
    await expect(page.locator("#batch-text")).to_have_text(
        "2 posts restored. They are under “Posts” again."
    )
    await expect(page.locator("#empty-text")).to_have_text(
        "Nothing was deleted in the last 7 days."
    )
    assert not any(f["deleted_by_user"] for f in (await factory.post_flags(ids)).values())
    assert watch.errors == []


async def test_change_the_license_of_selected_posts(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 5)
    license_id = await factory.license("CC-BY-4.0")
    page, _ = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 5 posts loaded.")
    await page.get_by_role("button", name="Select page").click()
    await page.locator("#license-select").select_option(str(license_id))
    await page.get_by_role("button", name="Set license").click()
    await expect(page.locator("#batch-text")).to_have_text(
        "5 posts relicensed. They stay selected."
    )
    await expect(page.locator("#posts-body td.license")).to_have_text(["CC-BY-4.0"] * 5)
    rows = await pool.fetch("SELECT license_id FROM posts WHERE id = any($1)", ids)
    assert {r["license_id"] for r in rows} == {license_id}


async def test_a_download_goes_live_to_ready_and_downloads(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    _, _, page, watch = await loaded_page(browser, stack, factory, 30)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await watch.mark()
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_label("Include comments").check()
    await page.get_by_role("button", name="Request download of 16 posts").click()

    card = page.locator("#bdr-list li").first
    await expect(card).to_have_attribute("data-status", "ready", timeout=60_000)
    await expect(page.locator("#toasts")).to_contain_text("Your download of 16 artworks is ready.")
    assert await watch.same_document()  # no reload: the status came over SSE
    await expect(card).to_contain_text("expires in 7 days")
    await shot(page, "download-ready")

    names = await saved_zip(page, card)
    assert sum(n.startswith("artworks/") for n in names) == 16
    assert {"metadata.json", "comments.json"} <= set(names)
    assert watch.errors == []


@pytest.mark.parametrize("mode", ["redirect", "proxy"])
async def test_a_zip_in_a_bucket_is_saved_by_the_browser(
    browser: Browser,
    settings: Settings,
    pool: asyncpg.Pool,
    redis_clean: None,
    tmp_path: Path,
    factory: Factory,
    seaweed: Seaweed,
    s3_bucket: str,
    s3_prefix: str,
    mode: str,
) -> None:
    """ZIP_STORE in a real S3 server: the browser follows the link (a ticket, no blob), gets a
    302 to the signed URL (or the bytes through the server) and saves the host's file name."""
    env = seaweed.env(s3_bucket, s3_prefix, ZIP_DOWNLOAD_MODE=mode)
    async with page_stack.running_stack(settings, tmp_path, free_port(), **env) as stack:
        _, ids, page, watch = await loaded_page(browser, stack, factory, 3)
        await page.get_by_role("button", name="Select page").click()
        await page.get_by_role("button", name="Request download of 3 posts").click()
        card = page.locator("#bdr-list li").first
        await expect(card).to_have_attribute("data-status", "ready", timeout=60_000)
        names = await saved_zip(page, card)
        assert sum(n.startswith("artworks/") for n in names) == len(ids)
        assert watch.errors == []


async def test_the_page_reconnects_after_the_server_drops_its_stream_and_catches_up(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids, page, watch = await artist_page(browser, stack, factory, 4)
    await watch.mark()
    bdr_id = await request_bdr(stack, owner, {"post_ids": ids})
    card = page.locator(f'#bdr-list li[data-id="{bdr_id}"]')
    await expect(card).to_have_attribute("data-status", "ready", timeout=60_000)

    # The server goes away (a deploy: SIGTERM closes every stream); meanwhile the BDR changes.
    await stack.stop_server()
    await expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
    await pool.execute(
        "UPDATE batch_download_requests SET status = 'expired' WHERE id = $1::uuid", bdr_id
    )
    await stack.start_server()

    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(card).to_have_attribute("data-status", "expired")
    # Expired with its date ahead and no `removed_at`: its file was lost, not removed.
    await expect(card.locator(".badge")).to_have_text("Expired")
    await expect(card.locator(".bdr-ended")).to_have_text("The file is no longer available.")
    streams = watch.urls("/api/pmd/bdr/sse?")
    assert len(streams) >= 2
    assert "last_event_id=" in streams[-1]  # resumed, not a fresh snapshot
    assert await watch.same_document()
    assert watch.errors == []


async def test_the_daily_limit_says_when_it_resets(
    browser: Browser, settings: Settings, factory: Factory, redis_clean: None, tmp_path: Path
) -> None:
    async with limit_reached(browser, settings, factory, tmp_path) as (page, _):
        toast = page.locator("#toasts .toast.wait")
        await expect(toast).to_contain_text("The limit of 1 download requests per day is reached")
        await expect(toast).to_contain_text("your time")
        await shot(page, "daily-limit")


async def test_an_expired_token_asks_to_sign_in_again(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner = await factory.user()
    page, _ = await open_page(browser, stack, owner, token=factory.token(owner.sqid, ttl=-60))
    banner = page.locator("#signin")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("expired or is not valid")
    await expect(banner).to_contain_text("Sign in on the site again")
    await expect(banner).not_to_contain_text("make")  # nothing a site's user cannot do
    assert "#token" not in page.url  # the token left the address bar at once


async def test_without_a_token_the_page_asks_to_sign_in_on_the_site(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner = await factory.user()
    context = await browser.new_context(viewport=WIDE)
    page = await context.new_page()
    await page.goto(f"{stack.base}/u/{owner.sqid}/posts")
    banner = page.locator("#signin")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("Sign in on the site and open this page from there")
    await expect(banner).not_to_contain_text("make")
    await context.close()


async def test_a_link_with_bdr_highlights_that_request(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, ids = await artist(factory, 3)
    made = [await request_bdr(stack, owner, {"post_ids": [post_id]}) for post_id in ids]
    page, _ = await open_page(browser, stack, owner, query=f"?bdr={made[1]}")
    card = page.locator(f'#bdr-list li[data-id="{made[1]}"]')
    await expect(card).to_have_class("bdr highlight")
    await expect(card).to_be_focused()
    await expect(page.locator("#bdr-list li.highlight")).to_have_count(1)


async def test_a_phone_sized_screen_in_dark_mode(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, _ = await artist(factory, 20)
    page, watch = await open_page(
        browser, stack, owner, viewport={"width": 375, "height": 812}, color_scheme="dark"
    )
    await expect(page.locator("#loading")).to_have_text("All 20 posts loaded.")
    # Nothing wider than the screen: no sideways scrolling of the page itself.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 19, 24)"  # the dark palette
    await page.locator("#posts-body input[type=checkbox]").nth(2).check()
    await shot(page, "phone-dark")
    await page.get_by_role("button", name="Request download of 1 post").click()
    await expect(page.locator("#bdr-list li")).to_have_count(1)
    assert watch.errors == []


async def test_cancel_a_queued_download(browser: Browser, stack: Stack, factory: Factory) -> None:
    assert stack.worker is not None
    stack.worker.terminate()  # nobody builds: the request stays queued
    await asyncio.to_thread(stack.worker.wait, 10)
    _, _, page, watch = await loaded_page(browser, stack, factory, 2)
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_role("button", name="Request download of 2 posts").click()
    card = page.locator("#bdr-list li").first
    await expect(card).to_have_attribute("data-status", "pending")
    await expect(card).to_contain_text("Waiting for a worker")
    await card.get_by_role("button", name="Cancel").click()
    await expect(card).to_have_attribute("data-status", "cancelled")
    await expect(card.get_by_role("button")).to_have_count(0)
    assert watch.errors == []


async def test_a_moderators_request_shows_as_such_and_only_the_moderator_may_cancel_it(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    assert stack.worker is not None
    stack.worker.terminate()  # nobody builds: the request stays queued
    await asyncio.to_thread(stack.worker.wait, 10)
    member, ids = await artist(factory, 2)
    moderator = await factory.user(roles=["moderator"])
    await request_bdr(stack, moderator, {"post_ids": ids, "target_sqid": member.sqid})
    page, watch = await open_page(browser, stack, member)
    card = page.locator("#bdr-list li").first
    await expect(card).to_contain_text("requested by a moderator")
    await expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    mod_page, mod_watch = await open_page(browser, stack, member, token=moderator.token)
    mod_card = mod_page.locator("#bdr-list li").first
    await mod_card.get_by_role("button", name="Cancel").click()
    await expect(mod_card).to_have_attribute("data-status", "cancelled")
    await expect(card).to_have_attribute("data-status", "cancelled")  # live on the user's page
    assert watch.errors == [] and mod_watch.errors == []


async def test_a_moderator_opens_someones_page_and_hides_as_moderator(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    member, ids, page, watch = await artist_page(browser, stack, factory, 3, moderated=True)
    await expect(page.locator("#who")).to_have_text(
        f"You are moderating @{member.handle}'s posts ({member.sqid})."
    )
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_role("button", name="Hide", exact=True).click()
    await expect(page.locator("#posts-body td.hidden")).to_have_text(["By moderator"] * 3)
    flags = await factory.post_flags(ids)
    assert all(f["hidden_by_mod"] and not f["hidden_by_user"] for f in flags.values())
    assert watch.errors == []


async def test_a_moderator_who_loses_the_role_sees_the_stream_end_and_why(
    browser: Browser, settings: Settings, factory: Factory, redis_clean: None, tmp_path: Path
) -> None:
    member, _ = await artist(factory, 2)
    moderator = await factory.user(roles=["moderator"])
    port = free_port()
    async with page_stack.running_stack(
        settings, tmp_path, port, SSE_ACCESS_CHECK_SECONDS="1"
    ) as stack:
        page, watch = await open_page(browser, stack, member, token=moderator.token)
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await factory.pool.execute(
            "UPDATE users SET roles = '[\"user\"]' WHERE id = $1", moderator.id
        )
        await expect(page.locator("#live")).to_have_attribute("data-state", "off")
        await expect(page.locator("#notice")).to_contain_text("Only moderators may act")
        # The event said why: no new ticket asked for only to be refused.
        assert len(watch.urls("/api/pmd/bdr/sse-ticket")) == 1
        assert len(watch.urls("/api/pmd/bdr/sse?")) == 1
        assert watch.errors == []


async def test_a_wide_screen_and_a_server_that_went_away(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    _, ids, page, watch = await loaded_page(
        browser, stack, factory, 40, viewport={"width": 1920, "height": 1080}
    )
    assert await page.evaluate("document.documentElement.scrollWidth") <= 1920
    await shot(page, "wide")
    await page.locator("#posts-body input[type=checkbox]").first.check()
    await stack.stop_server()
    await page.get_by_role("button", name="Hide", exact=True).click()
    error = page.locator("#batch-error")
    await expect(error).to_contain_text("Batch 1 of 1 got no answer: Could not reach the server")
    await expect(error).to_contain_text("whether the 1 post of this batch was hidden is not known")
    await expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
    # The page reloads the list to show the truth; with the server away that stops too.
    await expect(page.locator("#loading")).to_have_text("Loading stopped after 0 of ? posts.")
    assert not any(f["hidden_by_user"] for f in (await factory.post_flags(ids)).values())

    await stack.start_server()
    await page.get_by_role("button", name="Retry").click()
    await expect(page.locator("#loading")).to_have_text("All 40 posts loaded.")
    await expect(page.locator("#selected-count")).to_have_text("1")  # kept for another try
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    assert watch.errors == []


async def test_a_stream_reset_replaces_the_list_with_the_snapshot(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 3)
    made = [await request_bdr(stack, owner, {"post_ids": [post_id]}) for post_id in ids[:2]]
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("#bdr-list li")).to_have_count(2)
    # A live event gives the page an event id to resume from: an opening whose snapshot held
    # events the hub had not read yet can carry none (seen once in CI).
    made.append(await request_bdr(stack, owner, {"post_ids": [ids[2]]}))
    await expect(page.locator("#bdr-list li")).to_have_count(3)

    # While the page is away, one request is purged along with every event: the page's last
    # event id is unknown when it comes back, so the server sends `reset` and a snapshot.
    await stack.stop_server()
    await pool.execute("DELETE FROM batch_download_requests WHERE id = $1::uuid", made[0])
    await pool.execute("DELETE FROM stream_events")
    await stack.start_server()

    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("#bdr-list li")).to_have_count(2)
    await expect(page.locator(f'#bdr-list li[data-id="{made[1]}"]')).to_be_visible()
    assert "last_event_id=" in watch.urls("/api/pmd/bdr/sse?")[-1]
    assert watch.errors == []


async def test_a_failed_download_raises_a_toast(
    browser: Browser, stack: Stack, factory: Factory, settings: Settings
) -> None:
    _, ids, page, watch = await loaded_page(browser, stack, factory, 2)
    for path in settings.vault_path.rglob("*.*"):  # every artwork file goes missing
        path.unlink()
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_role("button", name="Request download of 2 posts").click()
    card = page.locator("#bdr-list li").first
    await expect(card).to_have_attribute("data-status", "failed", timeout=60_000)
    await expect(page.locator(".toast.error")).to_contain_text("A download failed:")
    await expect(card.locator(".bdr-skipped summary")).to_have_text("2 artworks skipped")
    assert len(ids) == 2 and watch.errors == []


async def test_a_missing_layers_file_is_shown_on_its_download(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 2)
    # The site declares a layers file it does not have.
    sqid = await pool.fetchval(
        "UPDATE posts SET mkpx_file_bytes = 900 WHERE id = $1 RETURNING public_sqid", ids[0]
    )
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await request_bdr(stack, owner, {"post_ids": ids})
    card = page.locator("#bdr-list li").first
    await expect(card).to_have_attribute("data-status", "ready", timeout=60_000)
    skipped = card.locator(".bdr-skipped")
    await expect(skipped.locator("summary")).to_have_text("1 file left out")
    await skipped.locator("summary").click()
    await expect(skipped.locator("li")).to_have_text(f"{sqid}: layers file (.mkpx) missing")
    assert watch.errors == []


async def test_paging_sorting_and_the_empty_state(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    nobody = await factory.user()
    page, _ = await open_page(browser, stack, nobody)
    await expect(page.locator("#empty-text")).to_have_text(
        "You have no artworks yet. Posts you upload appear here."
    )
    _, _, page, _ = await loaded_page(browser, stack, factory, 40)
    await page.get_by_role("button", name="Last page").click()
    await expect(page.locator("#page-info")).to_have_text("Page 3 of 3")
    await expect(page.locator("#posts-body tr")).to_have_count(8)
    # The focused "Last page" button turned disabled; the focus moved to "Previous page".
    await expect(page.get_by_role("button", name="Previous page")).to_be_focused()
    await page.get_by_role("button", name="First page").click()
    await expect(page.locator("#page-info")).to_have_text("Page 1 of 3")
    await page.locator("#page-input").fill("2")
    await page.keyboard.press("Enter")
    await expect(page.locator("#page-info")).to_have_text("Page 2 of 3")

    title = page.locator('th[data-sort="title"]')
    await title.get_by_role("button").click()
    await expect(title).to_have_attribute("aria-sort", "ascending")
    await expect(page.locator("#page-info")).to_have_text("Page 1 of 3")
    titles = await page.locator("#posts-body .title-text").all_text_contents()
    # The server's order: A to Z whatever the case, numbers by their value.
    assert titles[:3] == ["Café #4", "Café #12", "Café #20"]
    await title.get_by_role("button").click()
    await expect(title).to_have_attribute("aria-sort", "descending")
    views = page.locator('th[data-sort="view_count"]')
    await views.get_by_role("button").click()
    await expect(views).to_have_attribute("aria-sort", "descending")
    counts = await page.locator("#posts-body td.num:nth-child(8)").all_text_contents()
    as_ints = [int(c.replace(",", "")) for c in counts]
    assert as_ints == sorted(as_ints, reverse=True)


async def test_no_serious_accessibility_violations(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    """axe-core (the engine behind most accessibility audits) on the page in its main states,
    light and dark: nothing of serious or critical impact."""
    from axe_playwright_python.async_playwright import Axe

    owner, ids = await artist(factory, 20)
    await request_bdr(stack, owner, {"post_ids": ids[:3], "include_comments": True})
    axe = Axe()
    for scheme, viewport in (("light", WIDE), ("dark", PHONE)):
        page, _ = await open_page(browser, stack, owner, color_scheme=scheme, viewport=viewport)
        await expect(page.locator("#loading")).to_have_text("All 20 posts loaded.")
        await expect(page.locator("#bdr-list li").first).to_have_attribute("data-status", "ready")
        await page.locator("#posts-body input[type=checkbox]").first.check()
        results = await axe.run(page)
        serious = [
            f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert serious == [], (scheme, serious)
        assert len(results.response["passes"]) > 30  # the rules really ran

    # The control: a checkbox without a name is found.
    await page.locator("#posts-body input[type=checkbox]").first.evaluate(
        "box => box.removeAttribute('aria-label')"
    )
    found = {v["id"] for v in (await axe.run(page)).response["violations"]}
    assert "label" in found
