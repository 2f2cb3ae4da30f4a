"""What the posts table and its messages show (issue 53), in Debian's Chromium against real
`server.py` and `arq` worker processes, PostgreSQL and Redis: tags and layers, every column and
filter whole at 1440 px with the site's real licenses (and at 390 px), empty lists that say why,
"N days left" on deleted posts, refusals that name posts by title once, red only for deletion,
a batch line and toasts that never go stale or pile up, the selection after a filter-wide
action, and the engagement filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import asyncpg

from support.seeding import Factory
from tests.browser.page import DANGER, PHONE_390, Browser, Stack, expect, titled_artist
from tests.page_stack import WIDE, api, artist, broken_rows, clipped, loaded_page, open_page, shot

# The host site's licenses, with their full names (its about page).
LICENSES = [
    ("CC-BY-4.0", "Creative Commons Attribution 4.0 International"),
    ("CC-BY-SA-4.0", "Creative Commons Attribution-ShareAlike 4.0 International"),
    ("CC-BY-ND-4.0", "Creative Commons Attribution-NoDerivatives 4.0 International"),
    ("CC-BY-NC-4.0", "Creative Commons Attribution-NonCommercial 4.0 International"),
    ("CC-BY-NC-SA-4.0", "Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International"),
    (
        "CC-BY-NC-ND-4.0",
        "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International",
    ),
    ("CC0-1.0", "CC0 1.0 Universal Public Domain Dedication"),
    ("PDM-1.0", "Public Domain Mark 1.0"),
]
# Everything a person reads or uses in the filter bar, the toolbars, the table and the pager.
CONTROLS = ", ".join(
    [
        "#filters label",
        "#filters input",
        "#filters select",
        "#filters button",
        ".toolbar > *",
        ".toolbar .live-actions > *",
        ".editors > *",
        "#posts-table th",
        "#posts-table td",
        ".pager > *",
    ]
)


async def test_tags_layers_and_real_licenses_show_whole_at_1440_and_390_px(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 20)
    # A four-digit count, older than the artworks shown first.
    await factory.posts_bulk(owner, 1480, created_at=datetime.now(UTC) - timedelta(days=30))
    licenses = {}
    for identifier, title in LICENSES:
        licenses[identifier] = await pool.fetchval(
            "INSERT INTO licenses (identifier, title) VALUES ($1, $2) RETURNING id",
            identifier,
            title,
        )
    for n, post_id in enumerate(ids):
        identifier = LICENSES[n % len(LICENSES)][0]
        await pool.execute(
            "UPDATE posts SET license_id = $2, view_count = 1234567, hashtags = $3,"
            " mod_hashtags = $4, mkpx_file_bytes = $5 WHERE id = $1",
            post_id,
            licenses[identifier],
            ["staffpick", "pixelart", "cats"] if n == 0 else ["pixelart", "cats"],
            ["staffpick"] if n == 0 else [],
            40_000 if n % 2 == 0 else None,
        )
    await pool.execute("UPDATE posts SET hidden_by_mod = true WHERE id = $1", ids[0])
    await pool.execute("UPDATE posts SET hidden_by_user = true WHERE id = $1", ids[1])

    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 1,500 posts loaded.")
    first, second = page.locator("#posts-body tr").nth(0), page.locator("#posts-body tr").nth(1)
    # The artist's tags first, then the moderator's, marked as such.
    await expect(first.locator(".tags")).to_have_text(
        "#pixelart #cats #staffpick (a moderator's tag)"
    )
    await expect(first.locator(".tags .mod-tag")).to_have_text("#staffpick (a moderator's tag)")
    await expect(second.locator(".tags .mod-tag")).to_have_count(0)
    # The layers file, where there is one.
    await expect(first.locator("td.file .layers")).to_have_text("Layers · 39 KiB")
    await expect(second.locator("td.file .layers")).to_have_count(0)
    # The license's full name is its cell's tooltip.
    await expect(first.locator("td.license")).to_have_attribute("title", LICENSES[0][1])
    await expect(first.locator("td.hidden")).to_have_text("By moderator")

    # The widest the controls get: every post selected, the longest license chosen, the
    # filter's longest choices, and the table's longest values shown.
    await page.get_by_role("button", name="Select all loaded").click()
    for select in ("#license-select", "#f-license"):
        longest = await page.locator(f"{select} option").evaluate_all(
            "options => options.reduce((a, o) => o.text.length > a.text.length ? o : a).value"
        )
        await page.locator(select).select_option(longest)
    await page.locator("#f-has_layers").select_option("false")
    await page.locator("#f-remixable").select_option("false")
    assert await clipped(page, CONTROLS) == []
    assert await broken_rows(page, ".filter-row, .toolbar") == []
    assert await page.evaluate("document.documentElement.scrollWidth") <= WIDE["width"]
    await page.locator("#license-select").select_option(str(licenses["CC-BY-4.0"]))
    await shot(page, "table-1440")

    # The control: a table wider than its room is found, its last column first of all.
    await page.evaluate("document.getElementById('posts-table').style.minWidth = '1200px'")
    found = await clipped(page, "#posts-table th")
    assert any(f.startswith("Hidden:") for f in found), found
    assert watch.errors == []

    # A phone: the table keeps thumbnail, title (with the tags and the wide columns in a line
    # under it), date and hidden state, all whole; the filters take two columns.
    phone, phone_watch = await open_page(browser, stack, owner, viewport=PHONE_390)
    await expect(phone.locator("#loading")).to_have_text("All 1,500 posts loaded.")
    row = phone.locator("#posts-body tr").first
    await expect(row.locator(".tags")).to_be_visible()
    await expect(row.locator(".fold")).to_contain_text("layers 39 KiB")
    await expect(row.locator("td.file")).to_be_hidden()
    await phone.get_by_role("button", name="Select all loaded").click()
    assert await clipped(phone, CONTROLS) == []
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE_390["width"]
    assert watch.errors == [] and phone_watch.errors == []


async def test_an_empty_list_names_its_filter_or_the_trash(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 5)
    await pool.execute("UPDATE posts SET hashtags = '{wip}' WHERE id = ANY($1)", ids[:2])
    page, watch = await open_page(browser, stack, owner, query="?q=nothing+like+this")
    empty = page.locator("#empty")
    await expect(empty).to_contain_text("No posts match these filters (Search: nothing like this).")
    await expect(empty).not_to_contain_text("no artworks")
    await shot(page, "no-match")
    # Its Reset shows every post again, and leaves the URL without the filter.
    await empty.get_by_role("button", name="Reset filter").click()
    await expect(page.locator("#loading")).to_have_text("All 5 posts loaded.")
    await expect(empty).to_be_hidden()
    assert "q=" not in page.url
    await expect(page.locator("#f-q")).to_be_focused()

    # Everything a filter matched, deleted: the list says the filter, not "no artworks".
    await page.locator("#f-hashtag").fill("wip")
    await page.get_by_role("button", name="Filter", exact=True).click()
    await expect(page.locator("#loading")).to_have_text("All 2 posts loaded.")
    await page.get_by_role("button", name="Select all 2 matching").click()
    await page.get_by_role("button", name="Delete…").click()
    await page.locator("#confirm").get_by_role("button", name="Delete 2 posts").click()
    await expect(page.locator("#batch-text")).to_have_text(
        "2 posts deleted. They are under “Recently deleted”, should you want them back."
    )
    await expect(empty).to_contain_text("No posts match these filters (Tags: wip).")
    await expect(empty.get_by_role("button", name="Reset filter")).to_be_visible()

    # The trash, with the same filter, then without one.
    await page.get_by_role("button", name="Recently deleted").click()
    await expect(page.locator("#loading")).to_have_text("All 2 posts loaded.")
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_role("button", name="Restore").click()
    await expect(empty).to_contain_text("No deleted posts match these filters (Tags: wip).")
    await empty.get_by_role("button", name="Reset filter").click()
    await expect(page.locator("#empty-text")).to_have_text(
        "Nothing was deleted in the last 7 days."
    )
    await expect(page.locator("#empty-reset")).to_be_hidden()
    assert "(s)" not in await page.locator("body").inner_text()
    assert watch.errors == []


async def test_each_deleted_post_says_how_many_days_it_has_left(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await titled_artist(
        factory, ["Just deleted", "Two days ago", "Six days ago", "Kept"]
    )
    for post_id, ago in zip(ids, ["1 minute", "2 days 1 hour", "6 days 10 hours"], strict=False):
        await pool.execute(
            "UPDATE posts SET deleted_by_user = true,"
            " deleted_by_user_date = now() - $2::text::interval WHERE id = $1",
            post_id,
            ago,
        )
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 1 post loaded.")
    await page.get_by_role("button", name="Recently deleted").click()
    await expect(page.locator("#loading")).to_have_text("All 3 posts loaded.")

    async def left(title: str) -> str:
        row = page.locator("#posts-body tr").filter(has_text=title)
        return await row.locator(".days-left").inner_text()

    # Whole days, counted up as the site's own page does: never "0 days".
    assert (await left("Just deleted")).endswith(" · 7 days left")
    assert await left("Two days ago") == "Deleted 2 days ago · 5 days left"
    assert await left("Six days ago") == "Deleted 6 days ago · 1 day left"
    row = page.locator("#posts-body tr").filter(has_text="Two days ago")
    await expect(row.locator(".days-left")).to_have_attribute(
        "title", re.compile("^Can be restored until ")
    )
    await shot(page, "recently-deleted")
    assert watch.errors == []


async def test_restore_all_matching_restores_the_others_and_says_what_stayed(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    """Select all N matching → Restore in "Recently deleted", beside a post a moderator deleted
    and one whose artwork another user's post now holds: the others come back, and the page
    says which stayed and why, each row too, never naming the other user's post."""
    titles = ["Amber fox", "Blue heron", "Coral reef", "Dune moth"]
    owner, ids = await titled_artist(factory, titles)
    await pool.execute("UPDATE posts SET hashtags = '{wip}' WHERE id = ANY($1)", ids)
    await pool.execute("UPDATE posts SET hash = $2 WHERE id = $1", ids[2], "e" * 64)
    await api(stack, owner, "POST", "/api/pmd/action", {"action": "delete", "post_ids": ids[:3]})
    moderator = await factory.user(roles=["user", "moderator"])
    await api(
        stack,
        moderator,
        "POST",
        f"/api/pmd/action?target_sqid={owner.sqid}",
        {"action": "delete", "post_ids": ids[3:]},
    )
    stranger = await factory.user()
    theirs = await factory.post(stranger, title="Stranger's copy", hash="e" * 64)

    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await page.get_by_role("button", name="Recently deleted").click()
    await page.locator("#f-hashtag").fill("wip")
    await page.get_by_role("button", name="Filter", exact=True).click()
    await expect(page.locator("#loading")).to_have_text("All 4 posts loaded.")
    rows = page.locator("#posts-body tr")
    await expect(rows.filter(has_text="Coral reef")).to_contain_text(
        "Can't be restored: the same artwork is now another post."
    )
    await expect(rows.filter(has_text="Dune moth")).to_contain_text("a moderator deleted it")

    await page.get_by_role("button", name="Select all 4 matching").click()
    await page.get_by_role("button", name="Restore").click()
    await expect(page.locator("#batch-text")).to_have_text(
        "2 posts restored. They are under “Posts” again. 2 posts stayed in “Recently "
        "deleted”: 1 deleted by a moderator (only a moderator can restore it); 1 the same "
        "artwork is now another post."
    )
    await expect(page.locator("#loading")).to_have_text("All 2 posts loaded.")
    await expect(rows).to_have_count(2)
    await expect(rows.filter(has_text="Coral reef")).to_have_count(1)
    await expect(rows.filter(has_text="Dune moth")).to_have_count(1)
    flags = await factory.post_flags(ids)
    assert [flags[i]["deleted_by_user"] for i in ids] == [False, False, True, True]
    body = await page.locator("body").inner_text()
    assert "Stranger's copy" not in body and str(theirs.sqid) not in body
    assert watch.errors == []


async def test_a_refusal_names_the_posts_by_title_once(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    titles = ["Moonlit harbor", "Paper crane", "Quiet forest", "Red lantern"]
    owner, ids = await titled_artist(factory, titles)
    nd = await factory.license("CC-BY-ND-4.0")
    await pool.execute(
        "UPDATE posts SET license_id = $2, remixable = false WHERE id = ANY($1)", ids[1:3], nd
    )
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 4 posts loaded.")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await page.get_by_role("button", name="Select page").click()
    await page.get_by_role("button", name="Allow remixes").click()
    error = page.locator("#batch-error")
    await expect(error).to_contain_text(
        "“Paper crane” and “Quiet forest” have a NoDerivatives license"
    )
    await expect(error).to_contain_text("The 4 posts are still selected.")
    said = await error.inner_text()
    # Named once each, by title: no id, no list of fields repeating them, no toast beside it.
    assert said.count("Paper crane") == 1 and said.count("Quiet forest") == 1, said
    assert re.search(r"[Pp]osts? \d", said) is None, said
    assert "post_ids" not in said
    await expect(page.locator("#toasts .toast")).to_have_count(0)
    assert not any(f["hidden_by_user"] for f in (await factory.post_flags(ids)).values())

    # An undo that leaves a post changed since names it by title too.
    await page.get_by_role("button", name="Hide", exact=True).click()
    await expect(page.locator("#batch-text")).to_have_text("4 posts hidden. They stay selected.")
    await api(stack, owner, "POST", "/api/pmd/action", {"action": "unhide", "post_ids": ids[:1]})
    hid = page.locator('#recent-list li[data-action="hide"]')
    await expect(page.locator("#recent-list li").first).to_have_attribute("data-action", "unhide")
    await hid.get_by_role("button", name="Undo").click()
    await expect(page.locator("#toasts .toast > span")).to_have_text(
        "Undid the hide of 3 posts; “Moonlit harbor” changed again since and was left as it is."
    )
    assert watch.errors == []


async def test_red_only_for_deletion(browser: Browser, stack: Stack, factory: Factory) -> None:
    _, _, page, watch = await loaded_page(browser, stack, factory, 20)
    await page.get_by_role("button", name="Select all loaded").click()
    dialog = page.locator("#confirm")
    ok = page.locator("#confirm-ok")
    colours = "b => [getComputedStyle(b).color, getComputedStyle(b).borderTopColor]"

    # More than a page to hide: asked first, in the page's usual colours.
    await page.get_by_role("button", name="Hide", exact=True).click()
    await expect(ok).to_have_text("Hide 20 posts")
    assert DANGER not in await ok.evaluate(colours)
    await dialog.get_by_role("button", name="Cancel").click()
    # Removing a license is no deletion either.
    await page.locator("#license-select").select_option("")
    await page.get_by_role("button", name="Set license").click()
    await expect(ok).to_have_text("Remove the license of 20 posts")
    assert DANGER not in await ok.evaluate(colours)
    await dialog.get_by_role("button", name="Cancel").click()
    # A delete is.
    await page.get_by_role("button", name="Delete…").click()
    await expect(ok).to_have_text("Delete 20 posts")
    assert await ok.evaluate(colours) == [DANGER, DANGER]
    await dialog.get_by_role("button", name="Cancel").click()

    # On the page itself, only the delete buttons are red.
    red = await page.locator("button").evaluate_all(
        """(buttons, danger) => buttons
            .filter((b) => b.getClientRects().length > 0)
            .filter((b) => [getComputedStyle(b).color, getComputedStyle(b).borderTopColor,
                            getComputedStyle(b).backgroundColor].includes(danger))
            .map((b) => b.textContent.trim())""",
        DANGER,
    )
    assert red == ["Delete…"]
    assert watch.errors == []


async def test_the_batch_line_starts_over_and_toasts_never_pile_up(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 12)
    await pool.execute("UPDATE posts SET hashtags = '{wip}' WHERE id = ANY($1)", ids[:8])
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 12 posts loaded.")
    # Every text the batch line shows, with its bar's state then (null: under way, no count).
    await page.evaluate(
        """() => {
            window.seen = [];
            const text = document.getElementById("batch-text");
            const bar = document.getElementById("batch-progress");
            new MutationObserver(() => window.seen.push([text.textContent,
                bar.hasAttribute("value") ? bar.value / bar.max : null]))
                .observe(text, {childList: true, characterData: true, subtree: true});
            window.mostToasts = 0;
            window.toastTexts = [];
            const toasts = document.getElementById("toasts");
            new MutationObserver((records) => {
                window.mostToasts = Math.max(window.mostToasts, toasts.children.length);
                for (const r of records) {
                    for (const n of r.addedNodes) window.toastTexts.push(n.textContent);
                }
            }).observe(toasts, {childList: true});
        }"""
    )
    boxes = page.locator("#posts-body input[type=checkbox]")
    await boxes.nth(10).check()
    await page.get_by_role("button", name="Hide", exact=True).click()
    await expect(page.locator("#batch-text")).to_have_text("1 post hidden. They stay selected.")
    assert await page.locator("#batch-progress").evaluate("b => b.value / b.max") == 1

    # The next batch, by filter, starts with a bar that claims nothing done yet.
    await page.locator("#f-hashtag").fill("wip")
    await page.get_by_role("button", name="Filter", exact=True).click()
    await expect(page.locator("#loading")).to_have_text("All 8 posts loaded.")
    await page.get_by_role("button", name="Select all 8 matching").click()
    await page.get_by_role("button", name="Hide", exact=True).click()
    await expect(page.locator("#batch-text")).to_have_text("8 posts hidden. They stay selected.")
    seen = await page.evaluate("window.seen")
    started = [state for text, state in seen if text == "Hiding 8 posts…"]
    assert started == [None], seen
    assert seen[-1] == ["8 posts hidden. They stay selected.", 1]

    # The same message again replaces its toast; many messages keep the newest three.
    await page.get_by_role("button", name="Reset filter", exact=True).click()
    await expect(page.locator("#loading")).to_have_text("All 12 posts loaded.")
    await boxes.first.check()
    for _ in range(3):
        await page.get_by_role("button", name="Apply tags").click()
    await expect(page.locator("#toasts .toast")).to_have_count(1)
    for n in (1, 2, 3):
        await page.get_by_role("button", name="Clear").click()
        for i in range(n):
            await boxes.nth(i).check()
        await page.get_by_role("button", name=re.compile("^Request download of")).click()
        await expect(page.locator("#bdr-list li")).to_have_count(n)
    toasts = page.locator("#toasts .toast")
    # Shown, though a ready download's toast may already have pushed it out.
    await page.wait_for_function(
        "window.toastTexts.some((t) => t.includes('Download of 3 posts requested'))"
    )
    await expect(page.locator("#bdr-list li").first).to_have_attribute(
        "data-status", "ready", timeout=60_000
    )
    await expect(page.locator("#toasts")).to_contain_text("Your download of 3 artworks is ready.")
    assert await toasts.count() <= 3
    assert await page.evaluate("window.mostToasts") <= 3
    assert watch.errors == []


async def test_after_a_filter_wide_action_the_selection_is_what_still_matches(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids, page, watch = await loaded_page(browser, stack, factory, 20, query="?hidden=false")
    await page.get_by_role("button", name="Select all 20 matching").click()
    # Hidden, the posts no longer match "Visible": nothing is selected, so no other posts that
    # match later can be acted on by surprise.
    await page.get_by_role("button", name="Hide", exact=True).click()
    await page.locator("#confirm").get_by_role("button", name="Hide 20 posts").click()
    await expect(page.locator("#batch-text")).to_have_text(
        "20 posts hidden. They no longer match the filter."
    )
    await expect(page.locator("#selected-count")).to_have_text("0")
    await expect(page.locator("#empty")).to_contain_text(
        "No posts match these filters (Hidden: Visible)."
    )

    # The same posts still matching (by tag): they stay "all matching", ready for the next
    # action, as a batch of selected posts leaves them selected.
    await page.locator("#f-hidden").select_option("")
    await page.locator("#f-hashtag").fill("")
    await pool.execute("UPDATE posts SET hashtags = '{wip}' WHERE id = ANY($1)", ids[:5])
    await page.locator("#f-hashtag").fill("wip")
    await page.get_by_role("button", name="Filter", exact=True).click()
    await expect(page.locator("#loading")).to_have_text("All 5 posts loaded.")
    await page.get_by_role("button", name="Select all 5 matching").click()
    await page.get_by_role("button", name="Unhide").click()
    await expect(page.locator("#batch-text")).to_have_text("5 posts unhidden. They stay selected.")
    await expect(page.locator("#selected-count")).to_have_text("All 5 matching")
    await page.get_by_role("button", name="Forbid remixes").click()
    await expect(page.locator("#batch-text")).to_have_text("5 posts changed. They stay selected.")
    rows = await pool.fetch(
        "SELECT id, hidden_by_user, remixable FROM posts WHERE owner_id = $1", owner.id
    )
    changed = {r["id"] for r in rows if not r["hidden_by_user"] and not r["remixable"]}
    assert changed == set(ids[:5])
    assert "(s)" not in await page.locator("body").inner_text()
    assert watch.errors == []


async def test_the_engagement_filters(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 6)
    await pool.execute(
        "UPDATE posts p SET view_count = v.views FROM unnest($1::int[], $2::int[]) AS v(id, views)"
        " WHERE p.id = v.id",
        ids,
        [5000, 50, 500, 5, 50000, 0],
    )
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 6 posts loaded.")
    await page.get_by_role("spinbutton", name="Min. views").fill("500")
    await page.get_by_role("button", name="Filter", exact=True).click()
    await expect(page.locator("#loading")).to_have_text("All 3 posts loaded.")
    assert "min_views=500" in page.url
    # With the comments too: only the post with a comment (every fifth has one) and views.
    await page.get_by_role("spinbutton", name="Min. comments").fill("1")
    await page.get_by_role("button", name="Filter", exact=True).click()
    await expect(page.locator("#loading")).to_have_text("All 1 post loaded.")
    await expect(page.locator("#posts-body tr")).to_have_attribute("data-id", str(ids[0]))
    # A reload keeps the filter (the page's URL) and an action by filter sends numbers.
    await page.reload()
    await expect(page.get_by_role("spinbutton", name="Min. views")).to_have_value("500")
    await expect(page.locator("#loading")).to_have_text("All 1 post loaded.")
    await page.get_by_role("button", name="Select all 1 matching").click()
    await page.get_by_role("button", name="Hide", exact=True).click()
    await expect(page.locator("#batch-text")).to_have_text("1 post hidden. They stay selected.")
    sent = [b for b in watch.posts_to("/api/pmd/action") if "filter" in b]
    assert [b["filter"] for b in sent] == [{"min_views": 500, "min_comments": 1}]
    assert watch.errors == []
