"""Mentions served plain (issue 57): `<@SQID>` markup in descriptions and comment bodies reads
`@handle` (any existing account) or `@user` (no account) in the posts list, a download's JSON
and an export part's JSON and gallery, with the markup and `mentions` beside it as the host's
payloads carry them; the accounts are read once a page, a job or a part, at that time (a rename
shows in the next download). Real PostgreSQL with the host's newest tables, and Redis."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest
from aiohttp import web
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core import db
from pmd_service.core.settings import Settings
from pmd_service.features.bdr.job import process_bdr
from pmd_service.features.posts import listing
from pmd_service.features.posts.sorting import default_sort
from pmd_service.host.mentions import (
    SQL_ACCOUNTS,
    SQL_ACCOUNTS_WITH_COMMENTS,
    MentionRef,
    resolve,
)
from pmd_service.jobs.context import job_context
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow
from tests.exports import ready_export, unpacked
from tests.helpers import (
    Client,
    download_zip,
    fetch_item,
    logging_pool,
    posts_page,
    request_bdr,
    run_worker,
)

RESOLVING = (SQL_ACCOUNTS, SQL_ACCOUNTS_WITH_COMMENTS)


def m(user: UserRow) -> str:
    return f"<@{user.sqid}>"


async def gone_sqid(factory: Factory) -> str:
    """The sqid of an account deleted since it was mentioned."""
    user = await factory.user()
    await factory.pool.execute("DELETE FROM users WHERE id = $1", user.id)
    return user.sqid


async def test_grammar_and_accounts(host_url: str) -> None:
    """On the host's own tables (its alembic head): any existing account reads `@handle`."""
    conn = await asyncpg.connect(host_url)
    try:
        sqids = {}
        for handle, flags in [
            ("fab", ""),
            ("mika", ""),
            ("banned", "banned_until = now() + interval '9 days',"),
            ("off", "deactivated = true, hidden_by_user = true, hidden_by_mod = true,"),
            ("gone", ""),
        ]:
            sqids[handle] = handle.upper() + "x9"
            await conn.execute(
                "INSERT INTO users (user_key, public_sqid, handle, handle_normalized, email)"
                " VALUES (gen_random_uuid(), $1, $2::text, $2::text, $2::text || '@x.test')",
                sqids[handle],
                handle,
            )
            if flags:
                await conn.execute(
                    f"UPDATE users SET {flags.rstrip(',')} WHERE handle = $1", handle
                )
        await conn.execute("DELETE FROM users WHERE handle = 'gone'")
        t5, qx, gone = sqids["fab"], sqids["mika"], sqids["gone"]
        max_len = "A1" * 16  # 32 characters: a mention (of no account)
        vectors = [
            (f"hi <@{t5}>!", "hi @fab!", [t5]),
            (f"<@{t5}>, <@{qx}>.", "@fab, @mika.", [t5, qx]),
            (f"<@{t5}><@{qx}><@{t5}>", "@fab@mika@fab", [t5, qx]),  # adjacent; refs distinct
            (f"a<@{t5}>b", "a@fabb", [t5]),  # no word-boundary rule
            (f"<@<@{t5}>>", "<@@fab>", [t5]),  # nested: the inner one is the mention
            ("<@>", "<@>", []),
            ("<@a-b>", "<@a-b>", []),
            (f"<@{t5}", f"<@{t5}", []),
            (f"<@ {t5}>", f"<@ {t5}>", []),
            (f"< @{t5}>", f"< @{t5}>", []),
            (f"<@{max_len}>", "@user", []),
            (f"<@{max_len}X>", f"<@{max_len}X>", []),  # 33 characters: plain text
            (f"<@{gone}> and <@ZZZZ>", "@user and @user", []),  # deleted, never was
            (
                f"<@{sqids['banned']}> <@{sqids['off']}>",
                "@banned @off",
                [sqids["banned"], sqids["off"]],
            ),  # still accounts
            ("@fab <b>x</b>", "@fab <b>x</b>", []),
            ("", "", []),
            (None, None, []),
        ]
        found = await resolve(conn, [text for text, _, _ in vectors])
    finally:
        await conn.close()
    for text, plain, wanted in vectors:
        assert found.plain(text) == plain, text
        assert [r.public_sqid for r in found.refs(text)] == wanted, text
    assert found.rendered(f"x <@{t5}> <@{t5}>") == ("x @fab @fab", [MentionRef(t5, "fab", None)])


async def test_no_mark_no_query(database_url: str) -> None:
    async with logging_pool(database_url, "pmd-test-mentions") as (pool, queries):
        nothing = await resolve(pool, ["plain", None, "<@>", "a <@b-c>"])
    assert queries == []  # "<@" without a mention's grammar asks nothing either
    assert nothing.plain("a <@b-c>") == "a <@b-c>"


async def _post_with(factory: Factory, owner: UserRow, description: str | None) -> int:
    return (await factory.post(owner, description=description, data=None)).id


async def test_posts_list_items(client: Client, factory: Factory) -> None:
    owner = await factory.user("owner")
    fab = await factory.user("fab")
    await factory.pool.execute(
        "UPDATE users SET avatar_url = 'https://x.test/a.png' WHERE id = $1", fab.id
    )
    gone = await gone_sqid(factory)
    text = f"Pixel pals: {m(fab)} and <@{gone}>, {m(fab)} again <@>"
    await _post_with(factory, owner, None)
    await _post_with(factory, owner, "no mention at all")
    await _post_with(factory, owner, text)
    page = await posts_page(client, owner)
    with_mentions, plain, empty = page["items"]
    assert with_mentions["description"] == "Pixel pals: @fab and @user, @fab again <@>"
    assert with_mentions["description_markup"] == text
    assert with_mentions["mentions"] == [
        {"public_sqid": fab.sqid, "handle": "fab", "avatar_url": "https://x.test/a.png"}
    ]
    assert plain["description"] == plain["description_markup"] == "no mention at all"
    assert plain["mentions"] == []
    assert empty["description"] is None and empty["description_markup"] is None
    assert empty["mentions"] == []

    # The OpenAPI document declares what an item carries.
    schemas = (await (await client.get("/openapi.json")).json())["components"]["schemas"]
    declared = schemas["PostItem"]["properties"]
    assert set(with_mentions) <= set(declared)
    assert declared["mentions"]["items"]["$ref"].endswith("/MentionRef")
    mention = schemas["MentionRef"]
    assert (
        set(mention["required"]) == set(with_mentions["mentions"][0]) == set(mention["properties"])
    )

    # A rename reads at once; so does the deleted listing.
    await factory.pool.execute("UPDATE users SET handle = 'fabkury' WHERE id = $1", fab.id)
    await factory.pool.execute(
        "UPDATE posts SET deleted_by_user = true, deleted_by_user_date = now() WHERE owner_id = $1",
        owner.id,
    )
    deleted = await posts_page(client, owner, "deleted=true")
    assert deleted["items"][0]["description"].startswith("Pixel pals: @fabkury and")


async def test_q_matches_the_text_without_its_markup(client: Client, factory: Factory) -> None:
    """`q` reads a description as the host's search does, mentions stripped: never by a sqid
    or the markup, a word a mention splits reads whole, a flattened `@handle` is plain text."""
    owner, fab = await factory.user("owner"), await factory.user("fab")
    marked = await _post_with(
        factory, owner, f"Lazy pals: <@{fab.sqid}> and pix<@{fab.sqid}>el, hi @mika <@b-c>"
    )
    await _post_with(factory, owner, "nothing to see")

    async def found(q: str) -> list[int]:
        page = await posts_page(client, owner, urlencode({"q": q}))
        return [item["id"] for item in page["items"]]

    assert await found(fab.sqid) == []
    assert await found(f"<@{fab.sqid}>") == []
    assert await found("pixel") == [marked]
    assert await found("@mika") == [marked]  # typed (or flattened by the host) as plain text
    assert await found("<@b-c>") == [marked]  # not the grammar: plain text
    assert await found("LAZY PALS") == [marked]
    assert await found("@fab") == []  # the shown handle is not searched, as on the host


async def test_one_resolution_query_a_page(
    factory: Factory, pool: asyncpg.Pool, database_url: str
) -> None:
    owner = await factory.user()
    fans = [await factory.user(f"fan{n}") for n in range(20)]
    for n in range(60):
        await _post_with(factory, owner, " ".join(m(f) for f in fans[n % 5 : n % 5 + 16]))
    async with logging_pool(database_url, "pmd-test-mentions") as (logged, queries):
        first = await listing.list_posts(logged, owner.id, 50, None, deleted=False)
        first_queries = list(queries)
        queries.clear()
        later = await listing.list_posts(logged, owner.id, 50, first.next_cursor, deleted=False)
    page, after, count, after_count = listing.SQL_PAGES[False, False, default_sort(False)]
    assert sorted(first_queries) == sorted([page, count, SQL_ACCOUNTS])
    assert sorted(queries) == sorted([after, after_count, SQL_ACCOUNTS])
    assert all(len(i.mentions) == 16 for i in first.items + later.items)
    assert all("<@" not in (i.description or "") for i in first.items + later.items)


@contextlib.asynccontextmanager
async def counted_job_context(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[dict[str, Any], list[str]]]:
    """A worker's job context whose every database statement is recorded."""
    queries: list[str] = []
    original = db._init_connection

    async def init(conn: asyncpg.Connection) -> None:
        await original(conn)
        conn.add_query_logger(lambda r: queries.append(r.query))

    monkeypatch.setattr(db, "_init_connection", init)
    async with job_context(settings) as ctx:
        yield ctx, queries


async def _artist(factory: Factory) -> tuple[UserRow, UserRow, UserRow, list[int]]:
    owner, fab, fan = (
        await factory.user("owner"),
        await factory.user("fab"),
        await factory.user("fan"),
    )
    gone = await gone_sqid(factory)
    one = await factory.post(owner, title="one", description=f"for {m(fab)} and <@{gone}>")
    two = await factory.post(owner, title="two", description=None)
    await factory.comment(one, fan, f"{m(fab)} look, <@{m(fan)}>! <@{gone}> <@a-b>")
    await factory.comment(two, fab, "no mention <@>")
    return owner, fab, fan, [one.id, two.id]


def _artworks(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["title"]: a for a in metadata["artworks"]}


async def test_download_json_and_one_query_a_job(
    client: Client,
    factory: Factory,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner, fab, fan, post_ids = await _artist(factory)
    item = await request_bdr(client, owner, post_ids, include_comments=True)
    async with counted_job_context(settings, monkeypatch) as (ctx, queries):
        await process_bdr(ctx, item["id"])
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"
    assert sum(q in RESOLVING for q in queries) == 1
    archive = await download_zip(client, owner, item["id"])
    metadata = json.loads(archive.read("metadata.json"))
    one, two = _artworks(metadata)["one"], _artworks(metadata)["two"]
    assert one["description"] == "for @fab and @user"
    assert one["description_markup"].startswith(f"for {m(fab)} and <@")
    assert one["mentions"] == [{"public_sqid": fab.sqid, "handle": "fab", "avatar_url": None}]
    assert (two["description"], two["description_markup"], two["mentions"]) == (None, None, [])
    comments = json.loads(archive.read("comments.json"))["comments_by_artwork"]
    [on_one] = comments[archive_sqid(metadata, "one")]
    assert on_one["body"] == "@fab look, <@@fan>! @user <@a-b>"
    assert on_one["body_markup"].startswith(f"{m(fab)} look, <@{m(fan)}>! <@")
    assert [r["handle"] for r in on_one["mentions"]] == ["fab", "fan"]
    [on_two] = comments[archive_sqid(metadata, "two")]
    assert on_two["body"] == on_two["body_markup"] == "no mention <@>"
    assert on_two["mentions"] == []

    # Without comments and without a mention anywhere: no resolution query at all.
    plain = await factory.post(owner, title="plain", description="nothing here")
    quiet = await request_bdr(client, owner, [plain.id])
    queries.clear()
    async with counted_job_context(settings, monkeypatch) as (ctx, queries):
        await process_bdr(ctx, quiet["id"])
    assert (await fetch_item(client, owner, quiet["id"]))["status"] == "ready"
    assert not any(q in RESOLVING for q in queries)


def archive_sqid(metadata: dict[str, Any], title: str) -> str:
    sqid: str = _artworks(metadata)[title]["sqid"]
    return sqid


async def test_a_rename_shows_in_the_next_download(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, fab, _, post_ids = await _artist(factory)

    async def built() -> dict[str, Any]:
        item = await request_bdr(client, owner, post_ids, include_comments=True)
        await run_worker(settings)
        archive = await download_zip(client, owner, item["id"])
        return {
            "metadata": json.loads(archive.read("metadata.json")),
            "comments": json.loads(archive.read("comments.json")),
        }

    before = await built()
    await factory.pool.execute("UPDATE users SET handle = 'fabkury' WHERE id = $1", fab.id)
    after = await built()
    assert _artworks(before["metadata"])["one"]["description"] == "for @fab and @user"
    assert _artworks(after["metadata"])["one"]["description"] == "for @fabkury and @user"
    sqid = archive_sqid(after["metadata"], "one")
    assert after["comments"]["comments_by_artwork"][sqid][0]["body"].startswith("@fabkury look")
    assert after["comments"]["comments_by_artwork"][sqid][0]["mentions"][0]["handle"] == "fabkury"


@pytest.fixture
def again(settings: Settings) -> Settings:
    """Exports one after another, with no cooldown between them."""
    return replace(settings, export_cooldown_seconds=0)


@pytest.fixture
async def again_client(
    aiohttp_client: AiohttpClient, again: Settings, pool: asyncpg.Pool, redis_clean: None
) -> Client:
    app: web.Application = create_app(again)
    return await aiohttp_client(app)


async def test_export_part_json_and_gallery(
    again_client: Client, factory: Factory, again: Settings, tmp_path: Path
) -> None:
    owner, fab, _, _ = await _artist(factory)

    async def exported(into: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
        item = await ready_export(again_client, again, owner, include_comments=True)
        [folder] = await unpacked(again_client, owner, item, into)
        metadata = json.loads((folder / "data" / "metadata.json").read_text())
        comments = json.loads((folder / "data" / "comments.json").read_text())
        return metadata, comments, (folder / "index.html").read_text()

    metadata, comments, index = await exported(tmp_path / "first")
    one = _artworks(metadata)["one"]
    assert one["description"] == "for @fab and @user"
    assert one["description_markup"].startswith(f"for {m(fab)}")
    assert [r["public_sqid"] for r in one["mentions"]] == [fab.sqid]
    [on_one] = comments["comments_by_artwork"][one["sqid"]]
    assert on_one["body"] == "@fab look, <@@fan>! @user <@a-b>"
    assert "for @fab and @user" in index
    assert "@fab look, &lt;@@fan&gt;! @user &lt;@a-b&gt;" in index
    assert "&lt;@" + fab.sqid not in index and "<@" + fab.sqid not in index

    await factory.pool.execute("UPDATE users SET handle = 'fabkury' WHERE id = $1", fab.id)
    metadata, comments, index = await exported(tmp_path / "second")
    one = _artworks(metadata)["one"]
    assert one["description"] == "for @fabkury and @user"
    assert comments["comments_by_artwork"][one["sqid"]][0]["body"].startswith("@fabkury look")
    assert "for @fabkury and @user" in index and "@fabkury look" in index
