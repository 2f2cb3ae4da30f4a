"""A table that fits (issue 59), measured in Debian's Chromium against real `server.py` and
`arq` worker processes, PostgreSQL and Redis: at 1024, 1280 and 1440 px every column is in view
or folded into the title's cell, never past the screen; the toolbar is one line at 1440 px with
20,000 posts; a phone row shows its whole title, its date and state under it; toasts never cover
a control; the daily limit's toast is no alarm and counts down once; the history names the posts
it touched."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from pmd_service.core.settings import Settings
from support.seeding import Factory
from tests.browser.page import (
    DANGER,
    PHONE_390,
    Browser,
    Stack,
    expect,
    limit_reached,
    titled_artist,
)
from tests.page_stack import WIDE, api, artist, broken_rows, clipped, open_page, shot

if TYPE_CHECKING:
    from playwright.async_api import Page, ViewportSize

WIDTHS = (1024, 1280, 1440)

# Each column a person may sort by or read, whole: either its header lies within the screen and
# the table's own visible width, or (folded) its value shows in the first row's title cell.
COLUMNS_IN_VIEW = """() => {
    const wrap = document.querySelector(".table-wrap").getBoundingClientRect();
    const edge = Math.min(wrap.right, innerWidth) + 0.5;
    const row = document.querySelector("#posts-body tr");
    const seen = (el) => el && el.getClientRects().length > 0 &&
        getComputedStyle(el).visibility !== "hidden";
    const out = {};
    for (const th of document.querySelectorAll("#posts-table thead th[data-sort]")) {
        const col = th.dataset.sort;
        if (seen(th)) {
            const r = th.getBoundingClientRect();
            out[col] = r.right <= edge && r.left >= -0.5 ? "column" : `cut at ${r.right}`;
        } else {
            const folded = row.querySelector(`.fold [data-col="${col}"]`);
            const r = folded && folded.getBoundingClientRect();
            out[col] = seen(folded) && r.right <= edge ? "folded" : "missing";
        }
    }
    return out;
}"""

CONTROLS = "button, input, select, a[href], summary, label"
# What a person sees of each toast and of each control (a button, input, menu, link or label)
# on the screen: its box cut to the screen and to every ancestor that clips it (a scrolling
# panel shows only its own view); and each control whose visible box a toast's meets.
UNDER_TOASTS = """(selector) => {
    const seen = (el) => {
        if (!el.getClientRects().length || getComputedStyle(el).visibility === "hidden") {
            return null;
        }
        const r = el.getBoundingClientRect();
        let [left, top, right, bottom] = [r.left, r.top, r.right, r.bottom];
        left = Math.max(left, 0); top = Math.max(top, 0);
        right = Math.min(right, innerWidth); bottom = Math.min(bottom, innerHeight);
        for (let a = el.parentElement; a; a = a.parentElement) {
            const s = getComputedStyle(a);
            if (s.overflowX === "visible" && s.overflowY === "visible") continue;
            const b = a.getBoundingClientRect();
            left = Math.max(left, b.left + a.clientLeft);
            top = Math.max(top, b.top + a.clientTop);
            right = Math.min(right, b.left + a.clientLeft + a.clientWidth);
            bottom = Math.min(bottom, b.top + a.clientTop + a.clientHeight);
        }
        return right - left > 1 && bottom - top > 1 ? { left, top, right, bottom } : null;
    };
    const name = (c) => (c.id ? `#${c.id}` : "") ||
        c.textContent.trim().replace(/\\s+/g, " ").slice(0, 40) || c.tagName;
    const toasts = [...document.querySelectorAll("#toasts .toast")].map(seen).filter(Boolean);
    const meets = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom &&
        b.top < a.bottom;
    const covered = [...document.querySelectorAll(selector)]
        .filter((c) => !c.closest("#toasts"))
        .map((c) => [c, seen(c)])
        .filter(([, r]) => r && toasts.some((t) => meets(t, r)))
        .map(([c]) => name(c));
    return { toasts: toasts.length, covered };
}"""
# The page's very top and very bottom (in one column the page scrolls in a view of its own).
_SCROLLERS = "[window, document.getElementById('page')].filter(Boolean)"
TO_TOP = f"for (const s of {_SCROLLERS}) s.scrollTo(0, 0)"
TO_BOTTOM = f"for (const s of {_SCROLLERS}) s.scrollTo(0, 1e9)"
# Every width the page is laid out for: phones, a tablet, one column's widest, laptops.
TOAST_WIDTHS = (390, 768, 900, 1024, 1280, 1440)
# Those whose screenshot docs/screenshots keeps.
SHOT_WIDTHS = (390, 1024, 1440)


async def licensed_artist(factory: Factory, pool: asyncpg.Pool, n: int) -> Any:
    """An artist whose rows carry the widest values: long licenses, seven-digit views, tags."""
    owner, ids = await artist(factory, n)
    longest = await factory.license("CC-BY-NC-SA-4.0")
    await pool.execute(
        "UPDATE posts SET license_id = $2, view_count = 1234567, hashtags = '{pixelart,cats}',"
        " mkpx_file_bytes = 40000 WHERE id = ANY($1)",
        ids,
        longest,
    )
    await pool.execute("UPDATE posts SET hidden_by_mod = true WHERE id = $1", ids[0])
    return owner, ids


async def test_every_column_is_in_view_or_folded_at_1024_1280_and_1440_px(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, _ = await licensed_artist(factory, pool, 20)
    await factory.posts_bulk(owner, 1480, created_at=datetime.now(UTC) - timedelta(days=30))
    for width in WIDTHS:
        page, watch = await open_page(
            browser, stack, owner, viewport={"width": width, "height": 900}
        )
        await expect(page.locator("#loading")).to_have_text("All 1,500 posts loaded.")
        found = await page.evaluate(COLUMNS_IN_VIEW)
        assert set(found.values()) <= {"column", "folded"}, (width, found)
        # The columns one decides by are never folded.
        assert found["title"] == found["created_at"] == found["hidden"] == "column", found
        wrap = await page.locator(".table-wrap").evaluate("w => w.scrollWidth - w.clientWidth")
        assert wrap <= 0, (width, wrap)
        assert await page.evaluate("document.documentElement.scrollWidth") <= width
        await shot(page, f"fit-{width}")
        assert watch.errors == []
        await page.context.close()


async def test_the_toolbar_is_one_line_at_1440_px_with_20000_posts(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, _ = await licensed_artist(factory, pool, 20)
    # Every license the site has, for the license menu's width.
    for identifier in ("CC-BY-4.0", "CC-BY-NC-ND-4.0", "CC0-1.0", "PDM-1.0"):
        await factory.license(identifier)
    await factory.posts_bulk(owner, 19_980, created_at=datetime.now(UTC) - timedelta(days=30))
    page, watch = await open_page(browser, stack, owner, viewport=WIDE)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await page.get_by_role("button", name="Select page").click()
    await expect(page.locator("#select-matching")).to_have_text("Select all 20,000 matching")
    # The widest license chosen in the menu.
    longest = await page.locator("#license-select option").evaluate_all(
        "options => options.reduce((a, o) => o.text.length > a.text.length ? o : a).value"
    )
    await page.locator("#license-select").select_option(longest)
    assert await broken_rows(page, ".toolbar, .editors") == []
    await page.locator("#select-matching").click()
    await expect(page.locator("#selected-count")).to_have_text("All 20,000 matching")
    assert await broken_rows(page, ".toolbar") == []
    height = await page.locator(".toolbar").evaluate(
        "t => t.getBoundingClientRect().height / t.querySelector('button').offsetHeight"
    )
    assert height < 1.5, height
    assert watch.errors == []


async def test_a_phone_row_shows_its_whole_title_with_its_date_and_state_under_it(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    """At 390 px every title was cut to about nine characters ("Sunset o…"), its tags and
    details too, beside a date column that kept its full width: the row is now a card."""
    owner, ids = await licensed_artist(factory, pool, 12)
    title = "Sunset over the old harbour, painted at dusk"
    await pool.execute(
        "UPDATE posts SET title = $2, hashtags = '{pixelart,cats,sunset,harbour,dusk}'"
        " WHERE id = $1",
        ids[0],
        title,
    )
    page, watch = await open_page(browser, stack, owner, viewport=PHONE_390)
    await expect(page.locator("#loading")).to_have_text("All 12 posts loaded.")
    row = page.locator(f'#posts-body tr[data-id="{ids[0]}"]')
    await expect(row.locator(".title-text")).to_have_text(title)
    # Nothing in a title's cell is cut short, and the title has the row's width to itself.
    assert await clipped(page, "#posts-body td.title, #posts-body td.title *") == []
    box = await row.locator("td.title").bounding_box()
    assert box is not None and box["width"] > 0.6 * PHONE_390["width"], box
    # The date and the hidden state under the title; their columns are gone.
    meta = row.locator(".meta")
    uploaded = await page.evaluate(
        "(iso) => new Intl.DateTimeFormat(undefined, {dateStyle: 'medium'}).format(new Date(iso))",
        await row.locator(".meta time").get_attribute("datetime"),
    )
    await expect(meta).to_have_text(f"Uploaded {uploaded} · Hidden by moderator")
    await expect(page.locator("#posts-body tr").nth(1).locator(".meta")).to_have_text(
        re.compile(r"^Uploaded [^·]+$")
    )
    for gone in ("td.date", "td.hidden"):
        await expect(row.locator(gone)).to_be_hidden()
    await expect(page.locator('#posts-table th[data-sort="created_at"]')).to_be_hidden()
    title_box = await row.locator(".title-text").bounding_box()
    meta_box = await meta.bounding_box()
    assert title_box and meta_box and meta_box["y"] >= title_box["y"] + title_box["height"] - 1
    # What the folded columns hold is there too, whole.
    await expect(row.locator(".fold")).to_contain_text("1,234,567 views")
    await expect(row.locator(".fold")).to_contain_text("CC-BY-NC-SA-4.0")
    await expect(row.locator(".tags")).to_contain_text("#harbour")
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE_390["width"]
    # Beside the posts, the date and state keep their columns.
    await page.set_viewport_size(WIDE)
    await expect(meta).to_be_hidden()
    await expect(row.locator("td.date")).to_be_visible()
    await page.set_viewport_size(PHONE_390)
    # The screenshot: the selection toolbar and the row of what to change, then the rows.
    await page.evaluate("document.querySelector('.toolbar').scrollIntoView()")
    await shot(page, "fit-390")
    assert watch.errors == []


async def _nothing_under_toasts(page: Page, width: int, where: str) -> int:
    """How many toasts are on screen, asserting that none covers a control."""
    found = await page.evaluate(UNDER_TOASTS, CONTROLS)
    assert found["covered"] == [], (width, where, found)
    toasts: int = found["toasts"]
    return toasts


async def test_toasts_never_cover_a_control(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    for width in TOAST_WIDTHS:
        owner, _ = await artist(factory, 6)
        viewport: ViewportSize = {"width": width, "height": 844 if width < 500 else 800}
        page, watch = await open_page(browser, stack, owner, viewport=viewport)
        await expect(page.locator("#loading")).to_have_text("All 6 posts loaded.")
        toasts = page.locator("#toasts .toast")
        # Three toasts at once, the most the page shows: two requests and a refusal.
        await page.get_by_role("button", name="Select page").click()
        request = page.get_by_role("button", name=re.compile("^Request download of"))
        await request.click()
        await page.get_by_role("button", name="Apply tags").click()
        await page.get_by_role("button", name="Clear", exact=True).click()
        await page.locator("#posts-body tr").first.locator("input[type=checkbox]").check()
        await request.click()
        await expect(toasts).to_have_count(3)
        await page.evaluate(TO_TOP)
        assert await _nothing_under_toasts(page, width, "three toasts") == 3
        # Where a person looks next: the request's button, the selection toolbar, the editors.
        # (Each toast lingers 8 s, a refusal 15 s: on a slow machine one may go meanwhile.)
        for control in (request, page.locator(".toolbar"), page.locator("#act-tags")):
            await control.scroll_into_view_if_needed()
            assert await _nothing_under_toasts(page, width, "after requesting") >= 2
        # The newest download once ready, with its own toast, and the button one presses next.
        newest = page.locator("#bdr-list li").first
        await expect(newest).to_have_attribute("data-status", "ready", timeout=60_000)
        await expect(page.locator("#toasts")).to_contain_text("is ready")
        # (The requests' toasts may have gone by now: each lingers 8 s.) In one column the
        # toasts stay on screen wherever the page is scrolled; beside the posts they are at
        # the side column's top, which scrolls away with a list of posts shorter than it.
        seen = 1 if width <= 900 else 0
        await newest.get_by_role("button").first.scroll_into_view_if_needed()
        assert await _nothing_under_toasts(page, width, "download ready") >= seen
        if width in SHOT_WIDTHS and width <= 900:
            await shot(page, f"toasts-{width}")
        await request.scroll_into_view_if_needed()
        assert await _nothing_under_toasts(page, width, "request in view") >= seen
        for end in (TO_TOP, TO_BOTTOM):
            await page.evaluate(end)
            assert await _nothing_under_toasts(page, width, f"scrolled: {end}") >= seen
            # Beside the posts, the screenshot shows the page's top, the toasts at the side's.
            if end == TO_TOP and width in SHOT_WIDTHS and width > 900:
                await shot(page, f"toasts-{width}")
        assert watch.errors == []
        await page.context.close()


async def test_the_daily_limit_toast_is_no_alarm_and_counts_down_once(
    browser: Browser, settings: Settings, factory: Factory, redis_clean: None, tmp_path: Path
) -> None:
    async with limit_reached(browser, settings, factory, tmp_path) as (page, watch):
        toast = page.locator("#toasts .toast").filter(has_text="per day is reached")
        await expect(toast).to_be_visible()
        text = await toast.inner_text()
        assert len(re.findall(r"\bin \d+ (?:h|min)", text)) == 1, text
        assert "your time" in text
        colours = await toast.evaluate(
            """t => [...t.querySelectorAll("*"), t].flatMap((e) => {
                const s = getComputedStyle(e);
                return [s.color, s.borderLeftColor, s.borderTopColor, s.backgroundColor];
            })"""
        )
        assert DANGER not in colours, colours
        assert watch.errors == []


async def test_the_history_names_the_posts_an_action_touched(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    titles = ["Amber fox", "Blue heron", "Coral reef", "Dune moth", "Elm leaf"]
    owner, ids = await titled_artist(factory, titles)
    await api(stack, owner, "POST", "/api/pmd/action", {"action": "hide", "post_ids": ids})
    await api(stack, owner, "POST", "/api/pmd/action", {"action": "delete", "post_ids": ids[:1]})
    page, watch = await open_page(browser, stack, owner)
    items = page.locator("#recent-list li")
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_contain_text("“Amber fox”")
    hid = await items.nth(1).locator(".recent-posts").inner_text()
    named = re.findall(r"“([^”]+)”", hid)
    assert len(named) == 3 and set(named) <= set(titles), hid
    assert hid.endswith("and 2 more"), hid
    assert watch.errors == []
