"""The browser tests' one setup: without Playwright or Chromium the importing module skips."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from pmd_service.core.settings import Settings
from support.seeding import Factory, UserRow
from support.stack import free_port
from tests import page_stack
from tests.page_stack import Stack, Watch, artist, artist_page, loaded_page, running_stack
from tests.prerequisites import unmet

if (why := page_stack.browser_missing()) is not None:
    unmet("browser", why, module=True)

from playwright.async_api import Browser, Locator, Page, Request, ViewportSize, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

# Beside the helpers, what a page test imports from here: the stack's type and Playwright's
# names, imported only once the check above passed.
__all__ = ["Browser", "Locator", "Page", "PlaywrightTimeout", "Request", "Stack", "expect"]

KIB = 1024
# Export parts this small make several of a few artworks.
SMALL_PARTS = {
    "EXPORT_MIN_PART_BYTES": str(KIB),
    "EXPORT_PART_BYTES": str(64 * KIB),
    "EXPORT_MAX_PART_BYTES": str(1024 * KIB),
}
# And the next export, of either kind, may start at once.
NO_COOLDOWN = {
    **SMALL_PARTS,
    "EXPORT_COOLDOWN_SECONDS": "0",
    "EXPORT_INCREMENTAL_COOLDOWN_SECONDS": "0",
}
PHONE_390: ViewportSize = {"width": 390, "height": 844}
# The danger colour of the light palette (styles.css --danger).
DANGER = "rgb(180, 35, 24)"


async def checked_ids(page: Page) -> list[int]:
    """The posts ticked on the page shown."""
    ids = await page.locator("#posts-body input:checked").evaluate_all(
        "boxes => boxes.map(b => Number(b.dataset.id))"
    )
    return sorted(ids)


async def hidden(pool: asyncpg.Pool, ids: list[int], *, by_mod: bool = False) -> list[int]:
    """Those of `ids` their owner hid (`by_mod`: or a moderator), in order."""
    flags = "hidden_by_user OR hidden_by_mod" if by_mod else "hidden_by_user"
    query = f"SELECT id FROM posts WHERE id = ANY($1) AND ({flags}) ORDER BY id"
    return [r["id"] for r in await pool.fetch(query, ids)]


async def titled_artist(factory: Factory, titles: list[str]) -> tuple[UserRow, list[int]]:
    """A new user's artworks titled `titles`: without digits, a title is told from an id."""
    owner, ids = await artist(factory, len(titles))
    await factory.pool.execute(
        "UPDATE posts p SET title = t.title FROM unnest($1::int[], $2::text[]) AS t(id, title)"
        " WHERE p.id = t.id",
        ids,
        titles,
    )
    return owner, ids


async def serious_violations(page: Page) -> list[str]:
    """What axe-core finds of serious or critical impact on the page as it is."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    passes = len(results.response["passes"])
    assert passes > 30, passes  # the rules really ran
    return [
        f"{v['id']}: {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def request_again(page: Page, n: int) -> Locator:
    """The request button, once the page's `n` posts were requested twice."""
    await page.get_by_role("button", name="Select page").click()
    request = page.get_by_role("button", name=f"Request download of {n} posts")
    await request.click()
    await expect(page.locator("#bdr-list li")).to_have_count(1)
    await request.click()
    return request


async def asked_to_repeat(
    browser: Browser, stack: Stack, factory: Factory
) -> tuple[list[int], Page, Watch, Locator]:
    """A new user's 2 posts requested twice on their page: the dialog naming the repeat is open."""
    _, ids, page, watch = await artist_page(browser, stack, factory, 2)
    request = await request_again(page, 2)
    await expect(page.locator("#confirm")).to_contain_text("You asked for these posts already")
    return ids, page, watch, request


@contextlib.asynccontextmanager
async def alone(
    browser: Browser,
    settings: Settings,
    factory: Factory,
    tmp_path: Path,
    n: int,
    query: str = "",
    **env: str,
) -> AsyncIterator[tuple[Page, Watch]]:
    """A new user's page with their `n` posts loaded, on a stack of its own with `env` set."""
    async with running_stack(settings, tmp_path, free_port(), **env) as stack:
        _, _, page, watch = await loaded_page(browser, stack, factory, n, query=query)
        yield page, watch


@contextlib.asynccontextmanager
async def limit_reached(
    browser: Browser, settings: Settings, factory: Factory, tmp_path: Path
) -> AsyncIterator[tuple[Page, Watch]]:
    """A page (BDR_DAILY_LIMIT 1) whose request was refused: its artist, a moderator too, spent
    the day's one on another artist's posts after it opened, which it cannot know."""
    async with running_stack(settings, tmp_path, free_port(), BDR_DAILY_LIMIT="1") as stack:
        owner, _, page, watch = await loaded_page(browser, stack, factory, 3)
        other, theirs = await artist(factory, 1)
        await factory.pool.execute(
            """UPDATE users SET roles = '["user", "moderator"]' WHERE id = $1""", owner.id
        )
        spent = {"post_ids": theirs, "target_sqid": other.sqid}
        await page_stack.api(stack, owner, "POST", "/api/pmd/bdr", spent)
        await page.get_by_role("button", name="Select page").click()
        await page.get_by_role("button", name="Request download of 3 posts").click()
        yield page, watch
