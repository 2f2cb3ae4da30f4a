"""The page's "Export everything" panel in a real browser (Debian's Chromium, driven by
Playwright) against real `server.py` and `arq` worker processes, PostgreSQL and Redis.

The stack's parts are tiny (EXPORT_MIN_PART_BYTES 1 KiB, EXPORT_MAX_PART_BYTES 1 MiB), so a few
artworks make several parts, and the sizes the page offers first (Takeout's, from 256 MB) are
all out of bounds: the page offers what the server's bounds allow (GET /api/pmd/exports says
them), with the server's default chosen."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from pmd_service.core.codes import ITEM_SENTENCES, HostCode
from pmd_service.core.settings import Settings
from support.seeding import Factory, UserRow
from support.stack import free_port, log_tail
from tests import page_stack
from tests.browser.page import KIB, SMALL_PARTS, Browser, Page, Stack, expect, serious_violations
from tests.page_stack import PHONE, SCREENSHOTS, WIDE, artist, artist_page, loaded_page, open_page


@pytest.fixture
def stack_env() -> dict[str, str]:
    return SMALL_PARTS


async def api(
    stack: Stack, user: UserRow, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """A call as another tab (or the test) makes it: its status and JSON (or text)."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, stack.base + path, json=body, headers=user.auth) as r,
    ):
        if r.content_type.endswith("json"):
            return r.status, await r.json()
        return r.status, await r.text()


async def set_export(pool: asyncpg.Pool, export_id: str, changes: str) -> None:
    """The export's row changed as a worker (or time passing) would change it."""
    await pool.execute(f"UPDATE exports SET {changes} WHERE id = $1::uuid", export_id)


async def shot(page: Page, name: str) -> None:
    """Saved for the README when PMD_SCREENSHOTS names a folder: the panel in view, without
    the toasts that would cover it."""
    if SCREENSHOTS:
        await page.evaluate("document.querySelectorAll('.toast').forEach((t) => t.remove())")
        await page.locator("#exports").scroll_into_view_if_needed()
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


async def wrapped_texts(page: Page, selector: str) -> list[str]:
    """The texts under `selector` laid out on more than one line (one client rect per line)."""
    found: list[str] = await page.evaluate(
        """(sel) => {
            const out = [];
            for (const root of document.querySelectorAll(sel)) {
                const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
                for (let n = walk.nextNode(); n; n = walk.nextNode()) {
                    if (!n.textContent.trim() || !n.parentElement.offsetParent) continue;
                    const range = document.createRange();
                    range.selectNodeContents(n);
                    const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
                    if (lines.size > 1) out.push(n.textContent);
                }
            }
            return out;
        }""",
        selector,
    )
    return found


async def fits(page: Page, width: int) -> None:
    """Nothing wider than the screen, and no part table scrolled sideways in its card."""
    assert await page.evaluate("document.documentElement.scrollWidth") <= width
    assert await page.evaluate(
        "[...document.querySelectorAll('.parts-wrap')].every(w => w.scrollWidth <= w.clientWidth)"
    )


async def test_an_export_goes_live_to_ready_in_parts_and_a_part_downloads(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, _, page, watch = await loaded_page(browser, stack, factory, 5)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await watch.mark()
    panel = page.locator("#exports")
    await expect(panel).to_be_visible()
    size = page.get_by_label("Part size")
    # Takeout's sizes are beyond this server's bounds: the choice is what they allow, with the
    # server's default chosen.
    await expect(size.locator("option:checked")).to_have_text("64 KiB (default)")
    await expect(size.locator("option")).to_have_text(
        ["1 KiB (smallest allowed)", "64 KiB (default)", "1 MiB (largest allowed)"]
    )
    message = page.locator("#export-message")
    await size.select_option(str(KIB))
    await page.get_by_role("button", name="Start export").click()
    await expect(message).to_be_hidden()

    card = page.locator("#export-list > li").first
    await expect(card).to_have_attribute("data-status", "ready", timeout=90_000)
    assert await watch.same_document()  # no reload: every change came over the stream
    export_id = await card.get_attribute("data-id")
    assert export_id
    status, item = await api(stack, owner, "GET", f"/api/pmd/exports/{export_id}")
    assert status == 200 and item["part_bytes"] == KIB
    parts = item["parts"]
    count = len(parts)
    assert count >= 2
    rows = card.locator("table.parts tbody tr:not(.sha-row)")
    await expect(rows).to_have_count(count)
    for part in parts:
        row = rows.nth(part["number"] - 1)
        await expect(row).to_have_attribute("data-status", "ready")
        await expect(row.locator("th")).to_have_text(f"{part['number']} of {count}")
        await expect(
            row.get_by_role("button", name=f"Download part {part['number']} of {count}")
        ).to_be_visible()
        await expect(row.locator(".sha-short")).to_have_text(part["sha256"][:12] + "…")
    await expect(card).to_contain_text(f"5 artworks in {count} parts")
    await expect(card).to_contain_text("parts expire in 7 days")
    await expect(page.locator("#export-live")).to_contain_text(
        f"Export {export_id[:8]} is ready: {count} parts to download."
    )
    assert await wrapped_texts(page, "#export-form, #export-list .export-head, table.parts") == []
    await fits(page, WIDE["width"])

    # See the first part's SHA-256 in full and copy it.
    first = parts[0]
    await card.get_by_role("button", name="Show the SHA-256 of part 1").click()
    full = card.locator(f"#sha-{export_id[:8]}-1")
    await expect(full).to_be_visible()
    await expect(full.locator("code")).to_have_text(first["sha256"])
    await expect(card.get_by_role("button", name="Hide the SHA-256 of part 1")).to_be_focused()
    await full.get_by_role("button", name="Copy the SHA-256 of part 1").click()
    assert await page.evaluate("navigator.clipboard.readText()") == first["sha256"]

    # The browser saves part 1 itself, through a link with a ticket.
    async with page.expect_download() as info:
        await card.get_by_role("button", name=f"Download part 1 of {count}").click()
    download = await info.value
    assert download.suggested_filename == f"makapix-export-{export_id[:8]}-part-1-of-{count}.zip"
    assert "ticket=" in download.url and "/parts/1/download" in download.url
    data = await asyncio.to_thread(Path(await download.path()).read_bytes)
    assert hashlib.sha256(data).hexdigest() == first["sha256"]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
    bag = f"makapix-export-{export_id[:8]}-part-1/"
    assert all(name.startswith(bag) for name in names)
    assert {bag + "bagit.txt", bag + "manifest-sha256.txt", bag + "data/metadata.json"} <= set(
        names
    )

    # SHA256SUMS, for `sha256sum -c` beside the saved parts.
    async with page.expect_download() as info:
        await card.get_by_role("button", name="Save SHA256SUMS").click()
    sums = await info.value
    assert sums.suggested_filename == f"makapix-export-{export_id[:8]}.SHA256SUMS"
    text = await asyncio.to_thread(Path(await sums.path()).read_text)
    assert text.splitlines() == [
        f"{p['sha256']}  makapix-export-{export_id[:8]}-part-{p['number']}-of-{count}.zip"
        for p in parts
    ]
    await shot(page, "export-ready")

    # Within the cooldown "Start export" waits, saying when the next one can start.
    start = page.get_by_role("button", name="Start export")
    await expect(start).to_be_disabled()
    hint = page.locator("#export-hint")
    await expect(hint).to_contain_text("You can start the next export on ")
    await expect(hint).to_contain_text("(in 7 days)")
    await expect(start).to_have_accessible_description(re.compile("in 7 days"))
    await expect(page.locator("#export-list > li")).to_have_count(1)
    await shot(page, "export-cooldown")
    assert await serious_violations(page) == []
    assert watch.errors == []


async def test_an_archive_is_chosen_by_its_layout_and_its_part_unzips_for_importers(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, _, page, _ = await loaded_page(browser, stack, factory, 3)
    layout = page.get_by_label("Layout")
    await expect(layout.locator("option:checked")).to_have_text(
        "To keep: checked bags with a gallery"
    )
    await layout.select_option("activitypub")
    # Others' comments and reactions are not the artist's to carry; nor the site's copies.
    for name in ("With comments", "With reactions", "With the site's upscaled copies"):
        await expect(page.get_by_role("checkbox", name=name)).to_be_disabled()
    await page.get_by_role("button", name="Start export").click()
    card = page.locator("#export-list > li").first
    await expect(card).to_have_attribute("data-status", "ready", timeout=90_000)
    await expect(card.locator(".export-opts")).to_contain_text("an archive other sites import")
    export_id = await card.get_attribute("data-id")
    status, item = await api(stack, owner, "GET", f"/api/pmd/exports/{export_id}")
    assert status == 200 and item["layout"] == "activitypub"
    count = len(item["parts"])
    async with page.expect_download() as info:
        await card.get_by_role("button", name=f"Download part 1 of {count}").click()
    data = await asyncio.to_thread(Path(await (await info.value).path()).read_bytes)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        outbox = json.loads(archive.read("outbox.json"))
    # The folder importers read: the files at the root, each attachment an entry of its own.
    assert {"outbox.json", "actor.json", "likes.json", "bookmarks.json"} <= names
    assert outbox["type"] == "OrderedCollection" and outbox["orderedItems"]
    for activity in outbox["orderedItems"]:
        assert activity["type"] == "Create" and activity["object"]["type"] == "Note"
        assert all(a["url"] in names for a in activity["object"]["attachment"])


@pytest.fixture
async def stack_without_worker(
    settings: Settings, pool: asyncpg.Pool, redis_clean: None, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The default part sizes, and nobody to build: exports stay queued."""
    async with page_stack.running_stack(settings, tmp_path, free_port()) as stack:
        assert stack.worker is not None
        stack.worker.kill()  # at once, whatever it is doing: it has nothing to finish here
        await asyncio.to_thread(stack.worker.wait, 30)
        yield stack


async def test_a_running_export_is_named_when_starting_another_and_cancels_after_asking(
    browser: Browser, stack_without_worker: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    stack = stack_without_worker
    owner, _, page, watch = await artist_page(browser, stack, factory, 2)
    await expect(page.locator("#export-empty")).to_be_visible()

    # Another tab starts one: it shows up live.
    status, made = await api(stack, owner, "POST", "/api/pmd/exports", {})
    assert status == 202
    card = page.locator(f'#export-list > li[data-id="{made["id"]}"]')
    await expect(card).to_have_attribute("data-status", "pending")
    await expect(card).to_contain_text("Waiting for a worker…")
    await expect(page.locator("#export-hint")).to_have_text(
        f"Export {made['id'][:8]} is running: a new one can start once it ends."
    )

    await page.get_by_role("button", name="Start export").click()
    await expect(page.locator("#export-message")).to_have_text(
        f"Export {made['id'][:8]} is still running (0 of 2 artworks added). Wait for it to "
        "finish, or cancel it below, before starting another."
    )
    await expect(card).to_have_class("export highlight")

    # Part 1 is built while part 2 is still building (the rows as the worker writes them): part
    # 1 can be downloaded already.
    await pool.execute(
        "INSERT INTO export_parts (export_id, number, status, post_ids, artwork_count, "
        "estimated_bytes, file_size_bytes, sha256, completed_at) VALUES "
        "($1::uuid, 1, 'ready', '{}', 1, 2048, 1500, repeat('ab', 32), now()), "
        "($1::uuid, 2, 'processing', '{}', 1, 2048, NULL, NULL, NULL)",
        made["id"],
    )
    await set_export(
        pool,
        made["id"],
        "status = 'processing', started_at = now(), progress_done = 1, total_bytes = 1500, "
        "parts_version = parts_version + 1",
    )
    await expect(card).to_have_attribute("data-status", "processing")
    await expect(card.locator(".export-progress")).to_have_text(
        "1 of 2 artworks added · 1 of 2 parts ready"
    )
    rows = card.locator("table.parts tbody tr:not(.sha-row)")
    await expect(rows.nth(0).get_by_role("button", name="Download part 1 of 2")).to_be_visible()
    await expect(rows.nth(1)).to_contain_text("Building")
    await expect(rows.nth(1).get_by_role("button")).to_have_count(0)
    await expect(page.locator("#export-live")).to_have_text(
        f"Export {made['id'][:8]} is being built. Part 1 of 2 ready to download."
    )

    # By keyboard: the dialog opens on the harmless choice, and the focus comes back.
    cancel = card.get_by_role("button", name="Cancel export…")
    await cancel.focus()
    await page.keyboard.press("Enter")
    dialog = page.locator("#confirm")
    await expect(dialog).to_contain_text(f"Cancel export {made['id'][:8]}?")
    await expect(dialog).to_contain_text("the parts built so far are deleted")
    await expect(dialog.get_by_role("button", name="Keep it running")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(cancel).to_be_focused()
    row = "SELECT status FROM exports WHERE id = $1::uuid"
    assert await pool.fetchval(row, made["id"]) == "processing"

    await cancel.click()
    await dialog.get_by_role("button", name="Cancel the export").click()
    await expect(card).to_have_attribute("data-status", "cancelled")
    await expect(card.get_by_role("button")).to_have_count(0)
    assert await pool.fetchval(row, made["id"]) == "cancelled"

    # Cancelled after part 1 was ready (and could be downloaded), it counts for the cooldown
    # as a finished one would: cancelling before the last part is no way around it.
    start = page.get_by_role("button", name="Start export")
    await expect(start).to_be_disabled()
    await expect(page.locator("#export-hint")).to_contain_text("You can start the next export on ")
    cards = page.locator("#export-list > li")
    await expect(cards).to_have_count(1)
    # A week later, the POST's reply and the stream's events for the new export meet in one
    # card.
    await set_export(pool, made["id"], "created_at = created_at - interval '8 days'")
    await page.reload()
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(start).to_be_enabled()
    await start.click()
    await expect(cards).to_have_count(2)
    newest = cards.first
    await expect(newest).to_have_attribute("data-status", "pending")
    new_id = await newest.get_attribute("data-id")
    assert new_id and new_id != made["id"]
    status, _ = await api(stack, owner, "DELETE", f"/api/pmd/exports/{new_id}")
    assert status == 204
    await expect(newest).to_have_attribute("data-status", "cancelled")
    await expect(cards).to_have_count(2)
    assert watch.errors == []


async def test_the_email_link_shows_its_export_and_a_failure_keeps_built_parts(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, _ = await artist(factory, 3)
    status, older = await api(stack, owner, "POST", "/api/pmd/exports", {"part_bytes": KIB})
    assert status == 202
    query = "SELECT status FROM exports WHERE id = $1::uuid"

    async def ready() -> None:
        for _ in range(900):
            if await pool.fetchval(query, older["id"]) == "ready":
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the export is not ready" + log_tail(stack.directory / "worker.log"))

    await ready()
    page, watch = await open_page(
        browser, stack, owner, query=f"?export={older['id']}", viewport=PHONE, color_scheme="dark"
    )
    card = page.locator(f'#export-list > li[data-id="{older["id"]}"]')
    await expect(card).to_have_class("export highlight")
    await expect(card).to_be_focused()
    await expect(card).to_have_attribute("data-status", "ready")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await fits(page, PHONE["width"])
    assert await wrapped_texts(page, "table.parts tbody tr:not(.sha-row)") == []

    # It fails afterwards (as a worker giving up would leave it): the parts built stay, and
    # the page shows the code's sentence, never the text a run stored.
    await set_export(pool, older["id"], "status = 'failed', error_message = 'The vault went away.'")
    await expect(card).to_have_attribute("data-status", "failed")
    await expect(card.locator(".export-error")).to_have_text(
        f"The export failed: {ITEM_SENTENCES[HostCode.INTERNAL]} The 3 parts built before it "
        "stopped stay downloadable."
    )
    await expect(page.locator(".toast.error")).to_contain_text("Your export failed")
    await expect(card.get_by_role("button", name="Download part 1 of 3")).to_be_visible()
    await fits(page, PHONE["width"])

    assert await serious_violations(page) == []

    await card.get_by_role("button", name="Remove…").click()
    dialog = page.locator("#confirm")
    await expect(dialog).to_contain_text("Its 3 parts are deleted from the site now")
    await dialog.get_by_role("button", name="Remove the parts").click()
    await expect(card).to_have_attribute("data-status", "expired")
    await expect(card.locator(".badge")).to_have_text("Removed")  # the API's `removed_at`
    await expect(card.locator(".export-summary")).to_have_text("Its parts were removed just now.")
    await expect(card.get_by_role("button")).to_have_count(0)
    assert await pool.fetchval(query, older["id"]) == "expired"
    # Days later its date has passed too: still removed (a guess from the date would not be).
    await set_export(
        pool,
        older["id"],
        "expires_at = now() - interval '1 day', removed_at = now() - interval '2 days'",
    )
    later, watch2 = await open_page(browser, stack, owner)
    card = later.locator(f'#export-list > li[data-id="{older["id"]}"]')
    await expect(card.locator(".badge")).to_have_text("Removed")
    await expect(card.locator(".export-summary")).to_have_text("Its parts were removed 2 days ago.")
    assert watch.errors == [] and watch2.errors == []


async def test_no_panel_for_a_moderator_and_nothing_to_export_says_so(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    _, _, page, watch = await artist_page(browser, stack, factory, 2, moderated=True)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("#exports")).to_be_hidden()
    assert watch.urls("/api/pmd/exports") == []  # not even asked: it would be a 403
    assert watch.errors == []

    nobody = await factory.user()
    page, watch = await open_page(browser, stack, nobody)
    await expect(page.locator("#exports")).to_be_visible()
    await expect(page.locator("#export-empty")).to_have_text("No exports yet.")
    await page.get_by_role("button", name="Start export").click()
    await expect(page.locator("#export-message")).to_have_text(
        "There is nothing to export yet: you have no artworks. Deleted posts and playlists "
        "are not exported."
    )
    assert watch.errors == []


async def test_the_panel_catches_up_after_the_stream_drops(
    browser: Browser, stack_without_worker: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    stack = stack_without_worker
    owner, _, page, watch = await artist_page(browser, stack, factory, 2)
    await watch.mark()
    status, made = await api(stack, owner, "POST", "/api/pmd/exports", {})
    assert status == 202
    card = page.locator(f'#export-list > li[data-id="{made["id"]}"]')
    await expect(card).to_have_attribute("data-status", "pending")
    newest = await pool.fetchval("SELECT max(id) FROM stream_events WHERE user_id = $1", owner.id)

    # The server goes away (a deploy); meanwhile the export is cancelled elsewhere.
    await stack.stop_server()
    await expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
    await set_export(pool, made["id"], "status = 'cancelled'")
    await stack.start_server()

    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(card).to_have_attribute("data-status", "cancelled")
    # Resumed after the export's own event, not a fresh snapshot.
    assert f"last_event_id={newest}" in watch.urls("/api/pmd/bdr/sse?")[-1]
    await expect(page.locator("#export-list > li")).to_have_count(1)
    assert await watch.same_document()
    assert watch.errors == []


async def test_a_large_exports_small_events_still_show_every_part_and_what_was_left_out(
    browser: Browser, stack_without_worker: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    """An event names at most 12 parts and counts the skipped artworks (migration 0008): the
    page merges parts by number and asks for the export when the counts say it lacks some."""
    stack = stack_without_worker
    owner, _, page, _watch = await artist_page(browser, stack, factory, 2)
    status, made = await api(stack, owner, "POST", "/api/pmd/exports", {})
    assert status == 202
    card = page.locator(f'#export-list > li[data-id="{made["id"]}"]')
    await expect(card).to_have_attribute("data-status", "pending")
    # 20 parts planned at once (more than an event names), 19 built, the last building, and
    # 3 artworks left out: as the worker's rows would be.
    await pool.execute(
        "INSERT INTO export_parts (export_id, number, status, post_ids, artwork_count, "
        "estimated_bytes, file_size_bytes, sha256, completed_at) "
        "SELECT $1::uuid, n, CASE WHEN n < 20 THEN 'ready' ELSE 'processing' END, '{}', 1, "
        "2048, CASE WHEN n < 20 THEN 1500 END, CASE WHEN n < 20 THEN repeat('ab', 32) END, "
        "CASE WHEN n < 20 THEN now() END FROM generate_series(1, 20) AS n",
        made["id"],
    )
    skipped = [
        {"post_id": 900 + i, "public_sqid": f"Gone{i}", "reason": "file_missing"} for i in range(3)
    ]
    await pool.execute(
        "UPDATE exports SET status = 'processing', started_at = now(), artwork_count = 23, "
        "progress_done = 22, total_bytes = 28500, skipped = $2::jsonb, "
        "parts_version = parts_version + 1 WHERE id = $1::uuid",
        made["id"],
        skipped,
    )
    rows = card.locator("table.parts tbody tr:not(.sha-row)")
    await expect(rows).to_have_count(20)
    await expect(card.locator(".export-progress")).to_have_text(
        "22 of 23 artworks added · 19 of 20 parts ready"
    )
    await expect(rows.nth(0).get_by_role("button", name="Download part 1 of 20")).to_be_visible()
    await expect(rows.nth(19)).to_contain_text("Building")
    await expect(card).to_contain_text("3 artworks left out")
    # The last part is published: one event, its part named; every row stays.
    await pool.execute(
        "UPDATE export_parts SET status = 'ready', file_size_bytes = 1500, "
        "sha256 = repeat('cd', 32), completed_at = now() "
        "WHERE export_id = $1::uuid AND number = 20",
        made["id"],
    )
    await set_export(
        pool,
        made["id"],
        "status = 'ready', completed_at = now(), expires_at = now() + interval '7 days', "
        "progress_done = 23, parts_version = parts_version + 1",
    )
    await expect(card).to_have_attribute("data-status", "ready")
    await expect(rows).to_have_count(20)
    await expect(rows.nth(19).get_by_role("button", name="Download part 20 of 20")).to_be_visible()
    await expect(rows.nth(0).get_by_role("button", name="Download part 1 of 20")).to_be_visible()
    await expect(card).to_contain_text("3 artworks left out")
