"""`python -m pmd_service demo` (its `main`), against the test database: the demo data of
`make run` loaded once, into a database with no user, its artworks' files in VAULT_PATH, with
everything the README names (a NoDerivatives license, layers files, upscaled copies, a
moderator's tag and hidden post, deleted posts to restore, mentions in descriptions and
comments, served plain); `--posts N`, exactly N more; `--locale TAG`, the demo user's emails in
that language; one line and nothing written where it cannot (users already there, no Pillow, a
malformed tag). docker-compose.yml's `demo` service runs it (tests/deploy/test_compose_up.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.__main__ import main
from pmd_service.core.settings import Settings
from pmd_service.core.visibility import RESTORE_WINDOW_DAYS
from pmd_service.dev.demo import demo_language
from pmd_service.dev.demo_user import demo_user_key
from pmd_service.host.tokens import mint_token
from pmd_service.host.vault import (
    artwork_path,
    relative_layers_path,
    relative_upscaled_path,
)
from pmd_service.mail import mailbox
from pmd_service.web.app import create_app
from support.seeding import UserRow
from support.stack import connected
from tests.cli_env import admin_value, keep_process_logging
from tests.helpers import EMPTY_TABLES, SECRET, download_zip, fetch_item, request_bdr, run_worker

SQL_ARTWORKS = """
SELECT p.id, p.public_sqid, p.title, p.storage_shard, p.storage_key, p.hashtags::text[],
       p.mod_hashtags::text[], p.remixable, p.hidden_by_user, p.hidden_by_mod,
       p.deleted_by_user, p.deleted_by_user_date > now() - make_interval(days => $1) AS restorable,
       p.mkpx_file_bytes, l.identifier AS license, f.format
FROM posts p LEFT JOIN licenses l ON l.id = p.license_id
JOIN post_files f ON f.post_id = p.id AND f.is_native
WHERE p.kind = 'artwork' ORDER BY p.id
"""


def artwork_rows(admin_url: str) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        async with connected(admin_url) as conn:
            return [dict(r) for r in await conn.fetch(SQL_ARTWORKS, RESTORE_WINDOW_DAYS)]

    return asyncio.run(fetch())


def files_of(vault: Path, post: dict[str, Any]) -> list[Path]:
    """The post's files in the vault: its image, and its layers file and upscaled copy where
    they exist."""
    shard, key = post["storage_shard"], post["storage_key"]
    paths = [
        artwork_path(vault, shard, key, post["format"]),
        vault / relative_layers_path(shard, key),
        vault / relative_upscaled_path(shard, key),
    ]
    return [p for p in paths if p.is_file()]


@pytest.fixture
def env(
    settings: Settings, admin_database_url: str, monkeypatch: pytest.MonkeyPatch, redis_clean: None
) -> Settings:
    # The demo writes the host's tables: as the database's admin, not the service's own role
    # (least privilege: it may not), and straight to it, no pooler.
    monkeypatch.setenv("DATABASE_URL", admin_database_url)
    for name in ("DATABASE_DIRECT_URL", "DATABASE_POOLER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    monkeypatch.setenv("AUTO_MIGRATE", "false")
    monkeypatch.setenv("VAULT_PATH", str(settings.vault_path))
    monkeypatch.setenv("BASE_URL", "http://localhost:8123")
    admin_value(admin_database_url, EMPTY_TABLES)
    keep_process_logging(monkeypatch)
    return settings


def test_loads_once_and_says_who_and_where(
    env: Settings, admin_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    first = json.loads(capsys.readouterr().out)
    sqid = first["user_sqid"]
    assert first["loaded"] is True
    assert first["handle"] == "demo"
    assert first["page"] == f"http://localhost:8123/u/{sqid}/posts"
    assert first["token"] == f"python -m pmd_service token {sqid}"
    query = "SELECT count(*) FROM posts WHERE kind = 'artwork'"
    artworks = admin_value(admin_database_url, query)
    assert artworks == 40
    posts = artwork_rows(admin_database_url)
    every_file = {p for p in env.vault_path.rglob("*") if p.is_file()}
    assert every_file == {f for post in posts for f in files_of(env.vault_path, post)}
    # Again: nothing more, the same user.
    assert main(["demo"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again == first | {"loaded": False}
    assert admin_value(admin_database_url, query) == artworks


def test_never_into_a_database_with_users(
    env: Settings, admin_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    admin_value(
        admin_database_url,
        "INSERT INTO users (handle, email) VALUES ('someone', 's@x') RETURNING id",
    )
    assert main(["demo"]) == 2
    assert "already has users" in capsys.readouterr().err
    assert admin_value(admin_database_url, "SELECT count(*) FROM posts") == 0


def test_never_writes_to_a_real_account_named_demo(
    env: Settings, admin_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database whose `demo` the demo did not make (a real account of that name, with its
    posts): neither `demo` nor `demo --posts` writes a thing, one line and status 2."""
    user_id = admin_value(
        admin_database_url,
        "INSERT INTO users (handle, email, public_sqid)"
        " VALUES ('demo', 'demo@site.example', 'realDemo') RETURNING id",
    )
    admin_value(
        admin_database_url,
        "INSERT INTO posts (storage_key, owner_id, title) SELECT gen_random_uuid(), $1, 'own'"
        " FROM generate_series(1, 3) RETURNING 1",
        user_id,
    )
    counts = "SELECT (SELECT count(*) FROM posts) + 1000 * (SELECT count(*) FROM users)"
    before = admin_value(admin_database_url, counts)
    for argv in (["demo", "--posts", "50"], ["demo"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert len(captured.err.strip().splitlines()) == 1, captured.err
        assert admin_value(admin_database_url, counts) == before
    assert not any(env.vault_path.rglob("*.png"))


def test_without_pillow_one_line_and_nothing_written(
    env: Settings,
    admin_database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "PIL" else real(name, *a)
    )
    assert main(["demo"]) == 2
    assert "needs Pillow" in capsys.readouterr().err
    assert admin_value(admin_database_url, "SELECT count(*) FROM users") == 0


def test_the_demo_has_everything_the_readme_names(
    env: Settings, admin_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    capsys.readouterr()
    posts = artwork_rows(admin_database_url)
    vault = env.vault_path
    for post in posts:
        assert artwork_path(
            vault, post["storage_shard"], post["storage_key"], post["format"]
        ).is_file()
    # A NoDerivatives license, on posts whose remix permission is off (the host's rule).
    nd = [p for p in posts if p["license"] == "CC-BY-ND-4.0"]
    assert nd and not any(p["remixable"] for p in nd)
    assert {"CC-BY-4.0", "CC-BY-NC-4.0", "CC0-1.0", None} <= {p["license"] for p in posts}
    # Layers files where the host keeps them, of the size the post declares.
    layered = [p for p in posts if p["mkpx_file_bytes"] is not None]
    assert layered
    for post in layered:
        path = vault / relative_layers_path(post["storage_shard"], post["storage_key"])
        data = path.read_bytes()
        assert len(data) == post["mkpx_file_bytes"]
        assert data.startswith(b"\x89MKPX\r\n\x1a")
    # Upscaled copies beside their artworks, WebP.
    upscaled = [vault / relative_upscaled_path(p["storage_shard"], p["storage_key"]) for p in posts]
    found = [path for path in upscaled if path.is_file()]
    assert found and all(path.read_bytes()[8:12] == b"WEBP" for path in found)
    # A moderator's tag, which the host keeps in the post's tags too.
    tagged = [p for p in posts if p["mod_hashtags"]]
    assert tagged and all(set(p["mod_hashtags"]) <= set(p["hashtags"]) for p in tagged)
    # A post a moderator hid, posts the artist hid, and a few deleted that can be restored.
    assert any(p["hidden_by_mod"] for p in posts)
    assert any(p["hidden_by_user"] for p in posts)
    deleted = [p for p in posts if p["deleted_by_user"]]
    assert len(deleted) >= 2 and all(p["restorable"] for p in deleted)
    assert len(deleted) < len(posts) // 4


def test_more_posts_adds_exactly_that_many_with_their_files(
    env: Settings, admin_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Into an empty database: the demo first, then the posts asked for.
    assert main(["demo", "--posts", "3000"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["loaded"] is True and first["added_posts"] == 3000
    assert first["artworks"] == 3040
    posts = artwork_rows(admin_database_url)
    assert len(posts) == 3040
    assert main(["demo", "--posts", "7"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["loaded"] is False and again["user_sqid"] == first["user_sqid"]
    assert again["artworks"] == 3047
    posts = artwork_rows(admin_database_url)
    assert len(posts) == 3047
    owners = admin_value(
        admin_database_url,
        "SELECT count(DISTINCT owner_id) FROM posts WHERE kind = 'artwork'",
    )
    assert owners == 1
    added = posts[40:]
    # Numbered after the demo's own, each with its public id and its files.
    assert added[0]["title"].endswith(" #41") and added[-1]["title"].endswith(" #3047")
    assert all(p["public_sqid"] for p in added)
    assert len({p["public_sqid"] for p in posts}) == len(posts)
    for post in added[:50] + added[-50:]:
        assert files_of(env.vault_path, post)
    assert any(p["license"] == "CC-BY-ND-4.0" for p in added)
    assert any(p["mkpx_file_bytes"] for p in added)
    assert not any(p["deleted_by_user"] or p["hidden_by_mod"] for p in added)
    comments = admin_value(
        admin_database_url,
        "SELECT count(DISTINCT post_id) FROM comments WHERE post_id = ANY($1::int[])",
        [p["id"] for p in added],
    )
    assert comments > 0


@pytest.mark.parametrize("given", ["0", "-3", "many", "1000001"])
def test_more_posts_must_be_a_count(
    env: Settings, given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--posts", given])
    assert exited.value.code == 2
    assert "--posts" in capsys.readouterr().err


def demo_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["demo", *argv]) == 0
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    return printed


def sqids_of(admin_url: str) -> dict[str, str]:
    rows = admin_value(admin_url, "SELECT json_object_agg(handle, public_sqid) FROM users")
    found: dict[str, str] = json.loads(rows)
    return found


async def test_the_demo_posts_mention_fans_the_moderator_and_a_deleted_account(
    env: Settings,
    admin_database_url: str,
    aiohttp_client: AiohttpClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Served as the host's readers serve them: `@handle` plain, the stored `<@SQID>` beside
    it with `mentions`, and `@user` for the account deleted since; in the posts list and in a
    download's metadata.json and comments.json."""
    sqid = (await asyncio.to_thread(demo_json, capsys))["user_sqid"]
    users = await asyncio.to_thread(sqids_of, admin_database_url)
    assert set(users) == {"demo", "fan1", "fan2", "fan3", "mod"}
    demo = UserRow(0, sqid, "demo", mint_token(SECRET, sqid))
    client = await aiohttp_client(create_app(env))
    resp = await client.get("/api/pmd/posts?limit=10", headers=demo.auth)
    assert resp.status == 200
    items = [i for i in (await resp.json())["items"] if i["description_markup"]]
    mentioning = {i["description"]: i for i in items if "<@" in i["description_markup"]}
    jam = mentioning["Drawn live with @fan1 and @fan2 at the pixel jam ✨"]
    assert jam["description_markup"] == (
        f"Drawn live with <@{users['fan1']}> and <@{users['fan2']}> at the pixel jam ✨"
    )
    assert jam["mentions"] == [
        {"public_sqid": users[h], "handle": h, "avatar_url": None} for h in ("fan1", "fan2")
    ]
    assert [
        i["handle"] for i in mentioning["Picked by @mod for the front page, thank you!"]["mentions"]
    ] == ["mod"]
    [gone] = [i for i in mentioning.values() if "@user" in i["description"]]
    assert gone["mentions"] == [] and "<@" in gone["description_markup"]

    ids = [jam["id"], gone["id"]]
    item = await request_bdr(client, demo, ids, include_comments=True)
    await run_worker(env)
    assert (await fetch_item(client, demo, item["id"]))["status"] == "ready"
    archive = await download_zip(client, demo, item["id"])
    described = {a["description"] for a in json.loads(archive.read("metadata.json"))["artworks"]}
    assert {jam["description"], gone["description"]} == described
    bodies = [
        c["body"]
        for on_one in json.loads(archive.read("comments.json"))["comments_by_artwork"].values()
        for c in on_one
    ]
    assert "@fan1 your outlines are so clean here" in bodies
    assert "@user would have loved this" in bodies


async def test_locale_gives_the_demo_user_a_language_and_its_emails_use_it(
    env: Settings,
    admin_database_url: str,
    aiohttp_client: AiohttpClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    locale = "SELECT json_object_agg(handle, locale) FROM users"
    printed = await asyncio.to_thread(demo_json, capsys, "--locale", "pt-BR")
    assert (printed["loaded"], printed["locale"], printed["email_language"]) == (
        True,
        "pt-BR",
        "pt-BR",
    )
    # Run again: another tag replaces it; none keeps it; only the demo user has one.
    printed = await asyncio.to_thread(demo_json, capsys, "--locale", "es")
    assert (printed["loaded"], printed["locale"], printed["email_language"]) == (False, "es", "es")
    assert (await asyncio.to_thread(demo_json, capsys))["locale"] == "es"
    stored = await asyncio.to_thread(admin_value, admin_database_url, locale)
    assert json.loads(stored) == {
        "demo": "es", "fan1": None, "fan2": None, "fan3": None, "mod": None
    }  # fmt: skip

    # A download asked for with "Email me": its email, kept in dev mode's mailbox, is Spanish.
    dev = replace(env, dev_mode=True, smtp_host=None)
    client = await aiohttp_client(create_app(dev))
    demo = UserRow(0, printed["user_sqid"], "demo", mint_token(SECRET, printed["user_sqid"]))
    posts = (await (await client.get("/api/pmd/posts?limit=2", headers=demo.auth)).json())["items"]
    await request_bdr(client, demo, [p["id"] for p in posts], send_email=True)
    await run_worker(dev)
    [mail] = mailbox.kept(dev)
    assert (mail.to, mail.language) == ("demo@example.com", "es")


@pytest.mark.parametrize("command", ["demo", "dev"])
@pytest.mark.parametrize("given", ["e", "es_ES", "es-", "-es", "es--AR", "es AR", "x" * 36])
def test_locale_must_be_a_language_tag(
    env: Settings, admin_database_url: str, command: str, given: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        main([command, "--locale", given])
    assert exited.value.code == 2
    assert "--locale" in capsys.readouterr().err
    assert admin_value(admin_database_url, "SELECT count(*) FROM users") == 0


def test_make_runs_locale_reaches_the_dev_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run DEMO_LOCALE=es` runs `dev --locale es`: its tag reaches the stack."""
    given: list[str | None] = []
    monkeypatch.setattr("pmd_service.dev.stack.run_dev", lambda locale=None: given.append(locale))
    main(["dev", "--locale", "zh-Hans"])
    main(["dev"])
    assert given == ["zh-Hans", None]


async def test_a_host_without_users_locale_is_left_alone(admin_database_url: str) -> None:
    """Older host schemas have no `users.locale`: nothing is written, the emails are English."""
    async with connected(admin_database_url) as conn:
        await conn.execute("CREATE SCHEMA demo_old_host")
        try:
            await conn.execute(
                "CREATE TABLE demo_old_host.users (id serial, handle text, user_key uuid);"
                "SET search_path TO demo_old_host"
            )
            await conn.execute(
                "INSERT INTO users (handle, user_key) VALUES ('demo', $1)", demo_user_key("demo")
            )
            language = await demo_language(conn, "es")
        finally:
            await conn.execute("RESET search_path; DROP SCHEMA demo_old_host CASCADE")
    assert (language.column, language.locale) == (False, None)
