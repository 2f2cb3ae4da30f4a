"""The page's "Cleanup" panel (issue 68) in Chromium against a real server and worker: a
newcomer writes a policy, sees what it would change before saving it (and again when the posts
changed meanwhile), runs it now and undoes the run from "Recent actions", edits one (a widening
saved on the count approved; issue 75); a moderator's pause binds until a moderator lifts it, and
the owner resumes it on the count it would change; a failed or held run says so; the panel is
usable by keyboard and clean under axe-core, and gone where the site turned policies off. Saves
docs/screenshots/cleanup-policy.png when PMD_SCREENSHOTS names a folder."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from pmd_service.core.settings import Settings
from support.seeding import Factory, UserRow
from support.stack import free_port
from tests.browser.page import Browser, Stack, alone, expect, hidden, serious_violations
from tests.page_stack import Watch, api, artist, open_page, shot

if TYPE_CHECKING:
    from playwright.async_api import Page

POLICIES = "/api/pmd/policies"


@pytest.fixture
async def stack(
    settings: Settings, pool: asyncpg.Pool, redis_clean: None, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The server as shipped, beside a worker without the policies' tick: that tick would run
    a saved policy within a minute, and here only "Run now" runs one."""
    stack = Stack(settings, tmp_path, free_port(), extra_env={"CLEANUP_POLICIES": "false"})
    try:
        stack.start_worker()
        stack.extra_env = {}
        await stack.start_server()
        yield stack
    finally:
        stack.stop()


async def _age(pool: asyncpg.Pool, post_id: int, days: int) -> None:
    await pool.execute(
        "UPDATE posts SET created_at = now() - make_interval(days => $2) WHERE id = $1",
        post_id,
        days,
    )


async def _policy(stack: Stack, owner: UserRow, **fields: Any) -> dict[str, Any]:
    """A policy saved through the API on the count its preview showed."""
    body = {"name": "Old stuff", "action": "hide", "older_than_days": 365, **fields}
    seen = await api(stack, owner, "POST", f"{POLICIES}/preview", body)
    made: dict[str, Any] = await api(
        stack, owner, "POST", POLICIES, {**body, "expect_count": seen["count"]}
    )
    return made


async def _old_post_policy(
    stack: Stack, factory: Factory, n: int, days: int
) -> tuple[UserRow, list[int], dict[str, Any]]:
    """A new artist's `n` posts, the first `days` old, and their policy (`_policy`) saved."""
    owner, ids = await artist(factory, n)
    await _age(factory.pool, ids[0], days)
    return owner, ids, await _policy(stack, owner)


def _patches(watch: Watch) -> list[Any]:
    return [r.post_data_json for r in watch.requests if r.method == "PATCH"]


def _row(page: Page, title: str) -> Any:
    return page.locator("#posts-body tr", has_text=title)


async def test_a_newcomer_writes_a_policy_runs_it_now_and_undoes_the_run(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    # "Sunset #1", "Knight #2", "Slime #3" are over a year old, "Slime #3" tagged to keep.
    owner, ids = await artist(factory, 5)
    for post_id, days in zip(ids[:3], (500, 450, 420), strict=True):
        await _age(pool, post_id, days)
    await pool.execute("UPDATE posts SET hashtags = ARRAY['keep'] WHERE id = $1", ids[2])
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#loading")).to_have_text("All 5 posts loaded.")

    # The count comes before anything is saved, and follows the fields as they change.
    form = page.locator("#cleanup-form")
    count = page.locator("#cleanup-count")
    sample = page.locator("#cleanup-sample li")
    await expect(count).to_contain_text("3 posts")
    await form.get_by_label("Name").fill("Old sketches")
    await form.get_by_label("Tagged (any of)").fill("keep")
    await expect(count).to_contain_text("2 posts")
    await expect(sample).to_have_count(2)
    await expect(sample.nth(0)).to_contain_text("Sunset #1")  # the oldest first
    await expect(sample.nth(1)).to_contain_text("Knight #2")
    await form.scroll_into_view_if_needed()
    await shot(page, "cleanup-policy")

    # Another post grows old meanwhile: the save is refused, the new count shown, and saving
    # again approves that one.
    await _age(pool, ids[3], 400)
    save = form.get_by_role("button", name="Save policy")
    await save.click()
    await expect(page.locator("#cleanup-message")).to_be_visible()
    await expect(count).to_contain_text("3 posts")
    await expect(sample.nth(2)).to_contain_text("Café #4")
    await save.click()
    item = page.locator("#cleanup-list li")
    await expect(item).to_have_count(1)
    await expect(item.locator(".policy-name")).to_have_text("Old sketches")
    sent = watch.posts_to(POLICIES)
    assert [b["expect_count"] for b in sent] == [2, 3]
    assert all(b["expect_digest"] for b in sent)
    assert sent[-1]["keep"] == {"hashtags": ["keep"]} and sent[-1]["action"] == "hide"
    assert await hidden(pool, ids) == []

    await item.get_by_role("button", name="Run now").click()
    old = ["Sunset #1", "Knight #2", "Café #4"]
    for title in old:
        await expect(_row(page, title).locator("td.hidden")).to_have_text("Hidden")
    await expect(_row(page, "Slime #3").locator("td.hidden")).to_have_text("—")
    await expect(item.locator(".policy-runs")).to_contain_text("3 posts")
    assert await hidden(pool, ids) == sorted([ids[0], ids[1], ids[3]])

    # The run is an action of the policy's in "Recent actions", undone as any other.
    action = page.locator("#recent-list li").first
    policy_id = await item.get_attribute("data-id")
    assert policy_id
    await expect(action).to_have_attribute("data-policy", policy_id)
    await expect(action).to_contain_text("Old sketches")
    await action.get_by_role("button", name="Undo").click()
    await expect(action.get_by_role("button", name="Undo")).to_have_count(0)
    for title in old:
        await expect(_row(page, title).locator("td.hidden")).to_have_text("—")
    assert await hidden(pool, ids) == []
    assert watch.errors == []


async def test_a_moderator_may_only_pause_and_the_owner_resumes_on_its_count(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids, made = await _old_post_policy(stack, factory, 3, 400)
    moderator = await factory.user(roles=["user", "moderator"])

    page, watch = await open_page(browser, stack, owner, token=moderator.token)
    item = page.locator("#cleanup-list li")
    await expect(item).to_have_count(1)
    await expect(item.get_by_role("button")).to_have_text(["Pause"])
    await expect(page.locator("#cleanup-form")).to_be_hidden()
    await item.get_by_role("button", name="Pause").click()
    await expect(item).to_have_attribute("data-enabled", "false")
    await expect(item).to_have_attribute("data-paused-by-moderator", "true")
    await expect(item.get_by_role("button")).to_have_text(["Lift the pause"])
    listed = await api(stack, owner, "GET", POLICIES)
    assert [(p["id"], p["enabled"]) for p in listed["items"]] == [(made["id"], False)]

    # The moderator's pause binds: the owner's Resume is off, the row saying why.
    own, own_watch = await open_page(browser, stack, owner)
    mine = own.locator("#cleanup-list li")
    await expect(mine).to_have_attribute("data-paused-by-moderator", "true")
    resume = mine.get_by_role("button", name="Resume")
    await expect(resume).to_be_disabled()
    why = await resume.get_attribute("aria-describedby")
    assert why and f"policy-runs-{made['id']}" in why.split()
    await own.context.close()

    # Lifted by the moderator, the owner turns it on again only on the count it would change.
    await item.get_by_role("button", name="Lift the pause").click()
    await expect(item).to_have_attribute("data-paused-by-moderator", "false")
    await expect(item.get_by_role("button")).to_have_count(0)
    own, own_watch = await open_page(browser, stack, owner)
    mine = own.locator("#cleanup-list li")
    await expect(mine).to_have_attribute("data-enabled", "false")
    await mine.get_by_role("button", name="Resume").click()
    dialog = own.locator("#confirm")
    await expect(dialog).to_contain_text("1 post")
    await dialog.get_by_role("button", name="Resume").click()
    await expect(mine).to_have_attribute("data-enabled", "true")
    first, second = _patches(own_watch)
    assert first == {"enabled": True}
    assert second["expect_count"] == 1 and second["expect_digest"]
    assert _patches(watch) == [{"enabled": False}, {"paused_by_moderator": False}]
    assert await hidden(pool, ids) == []
    assert watch.errors == [] and own_watch.errors == []


async def test_a_failed_a_held_and_a_moderators_paused_policy_each_say_so(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 4)
    for post_id in ids[:3]:
        await _age(pool, post_id, 500)
    failed = await _policy(stack, owner, name="Failing")
    held = await _policy(stack, owner, name="Held")
    paused = await _policy(stack, owner, name="Paused")
    # A run cut off by its time bounds; a run held at 3 posts when 1 was approved.
    ran = {"at": "2026-01-01T00:00:00Z", "changed_count": 0, "error_code": None}
    await pool.execute(
        "UPDATE cleanup_policies SET last_run = $2 WHERE id = $1",
        uuid.UUID(failed["id"]),
        {**ran, "status": "failed", "left_count": 0, "error_code": "policy_run_timeout"},
    )
    await pool.execute(
        "UPDATE cleanup_policies SET last_run = $2, approved_count = 1 WHERE id = $1",
        uuid.UUID(held["id"]),
        {**ran, "status": "held", "left_count": 3},
    )
    moderator = await factory.user(roles=["user", "moderator"])
    path = f"{POLICIES}/{paused['id']}?target_sqid={owner.sqid}"
    await api(stack, moderator, "PATCH", path, {"enabled": False})

    page, watch = await open_page(browser, stack, owner)
    rows = page.locator("#cleanup-list li")
    await expect(rows).to_have_count(3)
    failing, holding, pausing = rows.nth(0), rows.nth(1), rows.nth(2)
    await expect(failing).to_have_attribute("data-last-run", "failed")
    await expect(failing.locator(".status-failed")).not_to_have_count(0)
    await expect(failing.locator(".policy-runs")).not_to_contain_text("policy_run_timeout")
    await expect(holding).to_have_attribute("data-last-run", "held")
    await expect(pausing).to_have_attribute("data-paused-by-moderator", "true")
    await expect(pausing.get_by_role("button", name="Resume")).to_be_disabled()
    assert await serious_violations(page) == []

    # The held run goes on once its owner approves the count it would change now.
    await holding.get_by_role("button", name="Approve 3 posts…").click()
    dialog = page.locator("#confirm")
    await expect(dialog).to_contain_text("3 posts")
    await dialog.get_by_role("button", name="Approve").click()
    await expect(holding.get_by_role("button", name="Approve 3 posts…")).to_have_count(0)
    assert _patches(watch) == [{"expect_count": 3}]
    stored = await api(stack, owner, "GET", f"{POLICIES}/{held['id']}")
    assert stored["approved_count"] == 3
    assert await hidden(pool, ids) == []
    assert watch.errors == []


async def test_the_panel_by_keyboard_and_under_axe_light_and_dark(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await artist(factory, 4)
    for post_id in ids[:2]:
        await _age(pool, post_id, 800)
    ran = await _policy(stack, owner, keep={"min_reactions": 1}, notify=True)
    await api(stack, owner, "POST", f"{POLICIES}/{ran['id']}/run")
    for scheme in ("light", "dark"):
        page, watch = await open_page(browser, stack, owner, color_scheme=scheme)
        await expect(page.locator("#loading")).to_have_text("All 4 posts loaded.")
        await expect(page.locator("#cleanup-sample li")).not_to_have_count(0)
        await expect(page.locator("#cleanup-list li .policy-runs")).to_contain_text("1 post")
        assert await serious_violations(page) == []
        assert watch.errors == []

    # Written and saved from the keyboard alone: Enter in a field saves, once counted.
    save = page.locator("#cleanup-save")
    await page.locator("#cleanup-days").focus()
    await page.keyboard.press("Control+A")
    await page.keyboard.type("700")
    await page.keyboard.press("Tab")  # "Runs"
    await page.keyboard.press("Tab")  # "All posts"
    await page.keyboard.press("ArrowDown")  # "Posts tagged"
    await page.keyboard.press("Tab")
    await expect(page.locator("#cleanup-tags")).to_be_focused()
    await page.keyboard.type("wip")
    await expect(page.locator("#cleanup-count")).to_contain_text("no post")
    await page.locator("#cleanup-name").focus()
    await page.keyboard.type("Old wips")
    await expect(save).not_to_have_attribute("aria-disabled", "true")
    await page.keyboard.press("Enter")
    await expect(page.locator("#cleanup-list li")).to_have_count(2)
    saved = watch.posts_to(POLICIES)[-1]
    assert saved["filter"] == {"hashtag": ["wip"]} and saved["older_than_days"] == 700
    assert saved["expect_count"] == 0
    assert await serious_violations(page) == []
    assert watch.errors == []


async def test_the_panel_is_gone_where_the_site_turned_policies_off(
    browser: Browser, settings: Settings, factory: Factory, redis_clean: None, tmp_path: Path
) -> None:
    env = {"CLEANUP_POLICIES": "false"}
    async with alone(browser, settings, factory, tmp_path, 2, **env) as (page, watch):
        asked = [r for r in watch.requests if r.url.endswith(POLICIES)]
        answer = await asked[0].response()
        assert answer is not None and answer.status == 404
        await expect(page.locator("#recent-empty")).not_to_have_text("Loading…")
        await expect(page.locator("#cleanup")).to_be_hidden()
        await expect(page.locator("#notice")).to_be_hidden()
        assert watch.errors == []


async def test_the_link_of_a_runs_email_shows_that_run_among_older_actions(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, ids, made = await _old_post_policy(stack, factory, 8, 500)
    ran = await api(stack, owner, "POST", f"{POLICIES}/{made['id']}/run")
    action_id = ran["run"]["action_id"]
    # Six actions since: the run is past the five the list shows first.
    for post_id in ids[1:7]:
        await api(
            stack, owner, "POST", "/api/pmd/action", {"action": "hide", "post_ids": [post_id]}
        )
    page, watch = await open_page(browser, stack, owner, query=f"?action={action_id}")
    linked = page.locator("#recent-list li.highlight")
    await expect(linked).to_have_count(1)
    await expect(linked).to_have_attribute("data-id", action_id)
    await expect(linked).to_contain_text("Old stuff")
    await expect(linked).to_be_in_viewport()
    await expect(page.locator("#recent-list li")).to_have_count(7)
    assert watch.errors == []


async def test_the_link_of_a_held_runs_email_shows_that_policy(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, _ids, made = await _old_post_policy(stack, factory, 2, 500)
    other = await _policy(stack, owner, name="Another rule")
    page, watch = await open_page(browser, stack, owner, query=f"?policy={made['id']}")
    linked = page.locator("#cleanup-list li.highlight")
    await expect(linked).to_have_count(1)
    await expect(linked).to_have_attribute("data-id", made["id"])
    await expect(linked).to_be_in_viewport()
    await expect(page.locator(f'#cleanup-list li[data-id="{other["id"]}"]')).not_to_have_class(
        "policy highlight"
    )
    assert watch.errors == []


async def test_a_policy_edited_and_widened_in_the_page(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    # Two posts over a year old, a third 200 days old: the saved policy takes the two.
    owner, ids = await artist(factory, 4)
    for post_id, days in zip(ids[:3], (500, 450, 200), strict=True):
        await _age(pool, post_id, days)
    made = await _policy(stack, owner, keep={"remixable": False})
    page, watch = await open_page(browser, stack, owner)
    item = page.locator("#cleanup-list li")
    await expect(item).to_have_count(1)

    # Edit fills the form with the policy as saved, counted as its run counts.
    await item.get_by_role("button", name="Edit").click()
    form = page.locator("#cleanup-form")
    count = page.locator("#cleanup-count")
    await expect(form.get_by_label("Name")).to_have_value("Old stuff")
    await expect(form.get_by_label("Older than (days)")).to_have_value("365")
    await expect(count).to_contain_text("2 posts")
    previews = [b for b in watch.posts_to(f"{POLICIES}/preview") if "policy_id" in b]
    assert previews and previews[-1]["policy_id"] == made["id"]

    # Widened to 100 days: the server names the new count, the owner approves it.
    await form.get_by_label("Older than (days)").fill("100")
    await expect(count).to_contain_text("3 posts")
    await form.get_by_role("button", name="Save changes").click()
    dialog = page.locator("#confirm")
    await expect(dialog).to_contain_text("3 posts")
    await dialog.get_by_role("button", name="Save changes").click()
    await expect(item.locator(".policy-rule")).to_contain_text("100 days")
    await expect(form.get_by_role("button", name="Save policy")).to_be_visible()
    first, second = _patches(watch)
    assert first == {"older_than_days": 100}
    assert second["older_than_days"] == 100 and second["expect_count"] == 3
    assert second["expect_digest"]
    stored = await api(stack, owner, "GET", f"{POLICIES}/{made['id']}")
    assert stored["older_than_days"] == 100 and stored["keep"] == {"remixable": False}

    # A rename narrows nothing: one PATCH with the name alone.
    await item.get_by_role("button", name="Edit").click()
    await expect(count).to_contain_text("3 posts")
    await form.get_by_label("Name").fill("Older stuff")
    await form.get_by_role("button", name="Save changes").click()
    await expect(item.locator(".policy-name")).to_have_text("Older stuff")
    assert _patches(watch)[2:] == [{"name": "Older stuff"}]
    assert await hidden(pool, ids) == []
    assert watch.errors == []


async def test_a_post_taken_back_is_left_by_the_count_and_the_run_alike(
    browser: Browser, stack: Stack, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids, made = await _old_post_policy(stack, factory, 3, 500)
    ran = await api(stack, owner, "POST", f"{POLICIES}/{made['id']}/run")
    await api(stack, owner, "POST", f"/api/pmd/actions/{ran['run']['action_id']}/undo")
    page, watch = await open_page(browser, stack, owner)
    await expect(page.locator("#cleanup-taken")).to_be_visible()
    # A new policy of the same fields would take the post again; this one would not.
    count = page.locator("#cleanup-count")
    await expect(count).to_contain_text("1 post")
    item = page.locator("#cleanup-list li")
    await item.get_by_role("button", name="Edit").click()
    await expect(count).to_contain_text("no post")
    await item.get_by_role("button", name="Run now").click()
    await expect(page.locator("#toasts .toast.ok")).to_be_visible()
    await expect(item.locator(".policy-runs")).to_contain_text("Last run")
    assert await hidden(pool, ids) == []
    # Cancelling the edit counts as a new policy again.
    await page.get_by_role("button", name="Cancel editing").click()
    await expect(count).to_contain_text("1 post")
    assert watch.errors == []


async def test_a_fields_error_names_it_by_its_label_and_bounds(
    browser: Browser, stack: Stack, factory: Factory
) -> None:
    owner, _ = await artist(factory, 2)
    page, watch = await open_page(browser, stack, owner)
    form = page.locator("#cleanup-form")
    count = page.locator("#cleanup-count")
    await expect(count).to_contain_text("no post")
    asked = len(watch.posts_to(f"{POLICIES}/preview"))

    # Past its bounds: said before anything is sent, by the field's label, the field marked.
    # By role: the sample's list is labelled by the count, which names the field.
    reactions = form.get_by_role("spinbutton", name="With reactions, at least")
    await reactions.fill("99999999999")
    await expect(reactions).to_have_attribute("aria-invalid", "true")
    await expect(count).to_contain_text("“With reactions, at least”")
    await expect(count).to_contain_text("2,147,483,647")
    await reactions.fill("3")
    await expect(reactions).not_to_have_attribute("aria-invalid", "true")
    await expect(count).to_contain_text("no post")
    sent = watch.posts_to(f"{POLICIES}/preview")[asked:]
    assert [b["keep"].get("min_reactions") for b in sent] == [3]

    # What the server refuses (a tag longer than any tag) comes back in the form's words too.
    tags = form.get_by_role("textbox", name="Tagged (any of)")
    await tags.fill("x" * 100)
    await expect(tags).to_have_attribute("aria-invalid", "true")
    await expect(count).to_contain_text("“Tagged (any of)”: at most")
    await expect(count).not_to_contain_text("Expected")
    await tags.fill("keep")
    await expect(count).to_contain_text("no post")
    await expect(tags).not_to_have_attribute("aria-invalid", "true")
    assert watch.errors == []
