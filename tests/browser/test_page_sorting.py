"""The page's sorting through the API, in a real browser (Debian's Chromium, Playwright) against
real `server.py` and worker processes, PostgreSQL and Redis: a column header asks the server for
its order and shows it, loading only a window of a large account, while "Select all N matching"
still acts on every post."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg

from support.seeding import Factory, UserRow
from tests.browser.page import Browser, Page, Stack, expect
from tests.page_stack import Watch, artist, open_page


async def _server_order(stack: Stack, owner: UserRow, **query: str) -> list[int]:
    """The ids of the first 16 posts in the server's order for `query`."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.base}/api/pmd/posts", params={**query, "limit": "16"}, headers=owner.auth
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return [i["id"] for i in (await resp.json())["items"]]


async def _shown(page: Page) -> list[int]:
    ids = await page.locator("#posts-body tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    return [int(i) for i in ids]


def _sorts_asked(watch: Watch) -> list[dict[str, Any]]:
    asked: list[dict[str, Any]] = []
    for url in watch.urls("/api/pmd/posts"):
        query = parse_qs(urlsplit(url).query)
        asked.append({k: query[k][0] for k in ("sort", "order") if k in query})
    return asked


async def test_a_column_header_asks_the_server_and_shows_its_order(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 12)
    bulk = await factory.posts_bulk(owner, 3000)
    everyone = ids + bulk
    # Views in no order the upload dates give, with ties.
    await pool.execute(
        "UPDATE posts SET view_count = (id * 37) % 101 WHERE id = ANY($1::int[])", everyone
    )
    page, watch = await open_page(browser, stack, owner)
    # A large account: a window loads, not every post.
    await expect(page.locator("#loading")).to_contain_text("more load as you page on")
    assert await page.evaluate("document.querySelectorAll('#posts-body tr').length") == 16

    views = page.locator('th[data-sort="view_count"]')
    await views.get_by_role("button").click()
    await expect(views).to_have_attribute("aria-sort", "descending")
    expected = await _server_order(stack, owner, sort="view_count", order="desc")
    await expect(page.locator("#posts-body tr").first).to_have_attribute(
        "data-id", str(expected[0])
    )
    assert await _shown(page) == expected
    assert {"sort": "view_count", "order": "desc"} in _sorts_asked(watch)
    await views.get_by_role("button").click()
    expected = await _server_order(stack, owner, sort="view_count", order="asc")
    await expect(page.locator("#posts-body tr").first).to_have_attribute(
        "data-id", str(expected[0])
    )
    assert await _shown(page) == expected

    # "Select all N matching" still acts on every post, loaded or not, by filter.
    await page.get_by_role("button", name="Select all 3,012 matching").click()
    await page.get_by_role("button", name="Hide", exact=True).click()
    await page.locator("#confirm").get_by_role("button", name="Hide 3,012 posts").click()
    await expect(page.locator("#batch-text")).to_have_text(
        "3,012 posts hidden. They stay selected."
    )
    hidden = await pool.fetchval(
        "SELECT count(*) FROM posts WHERE id = ANY($1::int[]) AND hidden_by_user", everyone
    )
    assert hidden == len(everyone)
    assert watch.errors == []


async def test_size_and_license_sort_on_the_server_without_loading_every_post(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner = await factory.user()
    ids = await factory.posts_bulk(owner, 3000)
    mit, cc = await factory.license("MIT"), await factory.license("CC-BY-4.0")
    # Sizes and licenses in no order the upload dates give, with ties and posts without one.
    await pool.execute(
        "UPDATE post_files SET file_bytes = (post_id * 53) % 997 WHERE post_id = ANY($1::int[])",
        ids,
    )
    await pool.execute(
        "UPDATE posts SET license_id = (ARRAY[$2::int, $3::int, NULL])[id % 3 + 1]"
        " WHERE id = ANY($1::int[])",
        ids,
        mit,
        cc,
    )
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_contain_text("more load as you page on")

    for sort, order in (("license", "asc"), ("file_bytes", "desc")):
        head = page.locator(f'th[data-sort="{sort}"]')
        await head.get_by_role("button").click()
        await expect(head).to_have_attribute(
            "aria-sort", "descending" if order == "desc" else "ascending"
        )
        expected = await _server_order(stack, owner, sort=sort, order=order)
        await expect(page.locator("#posts-body tr").first).to_have_attribute(
            "data-id", str(expected[0])
        )
        assert await _shown(page) == expected, sort
        assert {"sort": sort, "order": order} in _sorts_asked(watch)
        # Only a window ahead of the page shown loads, not all 3,000 posts.
        await expect(page.locator("#loading")).to_contain_text("more load as you page on")
        loaded = await page.evaluate(
            "document.getElementById('loading').textContent.match(/^([\\d,]+) of/)[1]"
        )
        assert int(loaded.replace(",", "")) < 3000, (sort, loaded)
    assert watch.errors == []
