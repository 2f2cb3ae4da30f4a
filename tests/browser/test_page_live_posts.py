"""Posts that change live on the page: a moderator's hide (and its undo) reaches every open tab
of the artist over the stream, without a reload, and so do posts the demo adds; a stream
whose server restarts is back within the page's promise of its return. In a real browser
(Debian's Chromium, Playwright) against real `server.py` and worker processes, PostgreSQL and
Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp

from pmd_service.dev.demo import FANS
from pmd_service.dev.demo_user import DEMO_HANDLE, demo_user_key, demo_user_sqid
from support.seeding import Factory, UserRow
from tests.browser.page import Browser, PlaywrightTimeout, Stack, expect
from tests.helpers import CHECKOUT
from tests.page_stack import Watch, artist, open_page
from tests.procs import CLI

# The most a page in view waits between attempts to reach a server (downloads.js).
SHOWN_BACKOFF_MAX_MS = 3000


async def test_a_moderators_hide_reaches_both_tabs_of_the_artist_without_a_reload(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, _ = await artist(factory, 20)
    moderator = await factory.user(roles=["moderator"])
    first, first_watch = await open_page(browser, stack, owner)
    # A second tab of the same browser, signed in the same way.
    second = await first.context.new_page()
    second_watch = Watch(second)
    await second.goto(f"{stack.base}/u/{owner.sqid}/posts#token={owner.token}")
    tabs = [(first, first_watch), (second, second_watch)]
    for page, watch in tabs:
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(page.locator("#loading")).to_have_text("All 20 posts loaded.")
        await watch.mark()
    shown = int(await first.locator("#posts-body tr").nth(2).get_attribute("data-id") or 0)
    row = f'#posts-body tr[data-id="{shown}"] td.hidden'
    for page, _ in tabs:
        await expect(page.locator(row)).to_have_text("—")

    body = {"action": "hide", "post_ids": [shown]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.base}/api/pmd/action",
            json=body,
            params={"target_sqid": owner.sqid},
            headers=moderator.auth,
        ) as r,
    ):
        assert r.status == 200, await r.text()
        undo = (await r.json())["undo"]
    # Each tab polls its DOM (within expect's own bound) and was never reloaded.
    for page, watch in tabs:
        await expect(page.locator(row)).to_have_text("By moderator")
        # The moderator's action is listed under "Recent actions" too, without Undo.
        listed = page.locator("#recent-list li").first
        await expect(listed).to_contain_text("by a moderator")
        assert await watch.same_document()

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base}{undo}", headers=moderator.auth) as r,
    ):
        assert r.status == 200, await r.text()
    for page, watch in tabs:
        await expect(page.locator(row)).to_have_text("—")
        assert await watch.same_document()
        assert watch.errors == []


async def _demo_user(factory: Factory) -> UserRow:
    """The demo loader's user, with the fans `demo --posts` gives comments: made as the loader
    makes them (marked by their `user_key`), or the ones an earlier test made."""
    for handle in (*FANS, DEMO_HANDLE):
        if await demo_user_sqid(factory.pool, handle) is None:
            await factory.user(handle, user_key=demo_user_key(handle))
    sqid = await demo_user_sqid(factory.pool)
    assert sqid is not None
    user_id = await factory.pool.fetchval("SELECT id FROM users WHERE public_sqid = $1", sqid)
    return UserRow(user_id, sqid, DEMO_HANDLE, factory.token(sqid))


async def test_posts_the_demo_adds_appear_in_an_open_tab(
    browser: Browser, stack: Stack, factory: Factory, admin_database_url: str
) -> None:
    owner = await _demo_user(factory)
    before = await factory.pool.fetchval(
        "SELECT count(*) FROM posts WHERE owner_id = $1 AND kind = 'artwork' "
        "AND NOT deleted_by_user",
        owner.id,
    )
    for n in range(before, 2):  # "All 2 posts loaded." at least
        await factory.post(owner, title=f"Earlier post #{n + 1}", data=None)
    before = max(before, 2)
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("#loading")).to_have_text(f"All {before} posts loaded.")
    await watch.mark()
    first = page.locator("#posts-body input[data-id]").first
    await first.check()

    # As a developer runs it, in another terminal: the demo writes the host's tables as the
    # database's owner.
    env = {k: v for k, v in stack.env().items() if k != "DATABASE_DIRECT_URL"}
    env |= {"DATABASE_URL": admin_database_url, "DATABASE_POOLER": "none"}
    demo = await asyncio.create_subprocess_exec(
        *CLI,
        "demo",
        "--posts",
        "3",
        cwd=CHECKOUT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await demo.communicate()
    assert demo.returncode == 0, err.decode()

    await expect(page.locator("#loading")).to_have_text(f"All {before + 3} posts loaded.")
    await expect(first).to_be_checked()  # the selection is kept
    assert await watch.same_document()
    assert watch.errors == []


async def test_a_restarted_server_is_streamed_from_again_within_3_s_of_its_return(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, _ = await artist(factory, 3)
    page, watch = await open_page(browser, stack, owner)
    live = page.locator("#live")
    await expect(live).to_have_attribute("data-state", "live")
    # The page's timers on a clock the test moves: how far apart its attempts come is counted
    # in the page's time, whatever this machine's speed.
    await page.clock.install()
    await page.clock.pause_at(datetime.now(UTC) + timedelta(seconds=1))

    async def attempts_within(ms: int) -> None:
        """The page's clock moved on `ms`: it asked for a ticket meanwhile."""
        try:
            async with page.expect_request(lambda r: "/sse-ticket" in r.url, timeout=30_000):
                await page.clock.run_for(ms)
        except PlaywrightTimeout:
            raise AssertionError(
                f"no attempt to reconnect within {ms} ms of the page's time"
            ) from None

    await stack.stop_server()
    await expect(live).to_have_attribute("data-state", "reconnecting")
    # Away long enough for an unbounded doubling backoff to grow past 8 s: while the page is in
    # view, each attempt still comes within 3 s of the last.
    for _ in range(5):
        await attempts_within(SHOWN_BACKOFF_MAX_MS)
        await expect(live).to_have_attribute("data-state", "reconnecting")  # it failed
    await stack.start_server()
    await attempts_within(SHOWN_BACKOFF_MAX_MS)
    await expect(live).to_have_attribute("data-state", "live")
    assert await page.locator("#posts-body tr").count() == 3
    assert watch.errors == []
