"""Dev mode keeps the emails it would send (SMTP_HOST unset) in a mailbox the dev server shows at
/dev/mail, newest first, each readable with its links; the page's header links to it in dev
mode only. Outside dev mode an unsent email is only logged, and there is no such page."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core.settings import Settings
from pmd_service.mail import mailbox
from pmd_service.web.app import create_app
from support.seeding import Factory
from tests.helpers import assert_problem, request_bdr, run_worker

Client = TestClient[Any, Any]


async def test_a_ready_email_in_dev_mode_is_read_at_the_dev_mailbox(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    dev = replace(settings, dev_mode=True, smtp_host=None)
    client = await aiohttp_client(create_app(dev))
    resp = await client.get("/dev/mail")
    assert resp.status == 200
    assert 'id="mail-empty"' in await resp.text()

    owner = await factory.user("mailme")
    posts = [await factory.post(owner) for _ in range(2)]
    first = await request_bdr(client, owner, [posts[0].id], send_email=True)
    await run_worker(dev)
    second = await request_bdr(client, owner, [p.id for p in posts], send_email=True)
    await run_worker(dev)

    resp = await client.get("/dev/mail")
    assert resp.status == 200
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    listing = await resp.text()
    links = re.findall(r'<li><a href="(/dev/mail/[^"]+)"[^>]*>([^<]+)</a> to ([^,]+),', listing)
    # Newest first: the ZIP of two, then the ZIP of one.
    assert [(subject, to) for _, subject, to in links] == [
        ("Your download of 2 artworks is ready", "mailme@example.com"),
        ("Your download of 1 artwork is ready", "mailme@example.com"),
    ]
    for (path, _, _), item in zip(links, (second, first), strict=True):
        resp = await client.get(path)
        assert resp.status == 200
        page = await resp.text()
        # Dev mode's link opens the page signed in: a token in the fragment.
        link = f"http://pmd.test/u/{owner.sqid}/posts?bdr={item['id']}#token="
        written = re.search(rf'<a href="({re.escape(link)}[^"]+)">([^<]+)</a>', page)
        assert written and written[1] == written[2], page
        assert "Hi mailme" in page


async def test_the_mailbox_shows_the_language_each_email_went_out_in(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    dev = replace(settings, dev_mode=True, smtp_host=None)
    client = await aiohttp_client(create_app(dev))
    for handle, locale in (("inspanish", "es-AR"), ("inportuguese", "pt-PT")):
        owner = await factory.user(handle, locale=locale)
        post = await factory.post(owner)
        await request_bdr(client, owner, [post.id], send_email=True)
    await run_worker(dev)

    listing = await (await client.get("/dev/mail")).text()
    rows = re.findall(
        r'<li><a href="(/dev/mail/[^"]+)" lang="([^"]+)">.*?, in <span[^>]*>([^<]+)</span>', listing
    )
    by_language = {language: (path, shown) for path, language, shown in rows}
    # es-AR finds the Spanish copy; pt-PT, with no copy of its own, Brazil's (bare `pt`'s
    # likely region).
    assert {lang: shown for lang, (_, shown) in by_language.items()} == {
        "es": "Spanish, es",
        "pt-BR": "Portuguese (Brazil), pt-BR",
    }
    page = await (await client.get(by_language["es"][0])).text()
    assert '<dd id="mail-language">Spanish, es</dd>' in page
    assert '<pre id="mail-text" lang="es">Hola, inspanish:' in page


async def test_outside_dev_mode_an_unsent_email_is_not_kept_and_there_is_no_mailbox(
    client: Client, settings: Settings, factory: Factory
) -> None:
    owner = await factory.user("mailme")
    post = await factory.post(owner)
    item = await request_bdr(client, owner, [post.id], send_email=True)
    await run_worker(settings)
    assert (await client.get(f"/api/pmd/bdr/{item['id']}", headers=owner.auth)).status == 200
    assert not mailbox.folder(settings).exists()
    await assert_problem(await client.get("/dev/mail"), 404)
    page = await (await client.get(f"/u/{owner.sqid}/posts")).text()
    assert "/dev/mail" not in page and "Mailbox" not in page


async def test_the_page_links_the_mailbox_in_dev_mode(
    aiohttp_client: AiohttpClient, settings: Settings, redis_clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, dev_mode=True)))
    resp = await client.get("/u/Uk/posts")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    page = await resp.text()
    assert re.search(r'<a id="dev-mailbox"[^>]* href="/dev/mail"[^>]*>Mailbox \(dev\)</a>', page)
    assert '<script type="module" src="/static/pmd/app.js">' in page


async def test_only_a_kept_emails_name_is_read(
    aiohttp_client: AiohttpClient, settings: Settings, redis_clean: None
) -> None:
    client = await aiohttp_client(create_app(replace(settings, dev_mode=True)))
    secret = settings.data_dir / "dev-jwt-secret"
    secret.write_text("not for the mailbox")
    (settings.data_dir / "mailbox").mkdir()
    for name in (
        "..%2Fdev-jwt-secret",
        "%2E%2E%2Fdev-jwt-secret",
        "00000000000000000001-" + "0" * 32 + ".eml",  # well formed, but no such email
        "dev-jwt-secret",
    ):
        resp = await client.get(f"/dev/mail/{name}")
        assert resp.status == 404, name
        assert "not for the mailbox" not in await resp.text()
