"""The ready/failed emails in the recipient's language (`users.locale`), through a real SMTP
server (aiosmtpd) and the worker, on real PostgreSQL: the exact tag, then its base language,
then English, key by key; EMAIL_COPY_DIR's files before the project's; a host without the
column (or NULL) gets English; dates as the locale writes them. A tag without copy of its own
reads the copy CLDR's likely subtags name in its script (`pt` → pt-BR, `zh-CN` → zh-Hans; not
`zh-TW`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from babel import Locale
from pytest_aiohttp import AiohttpClient

from pmd_service.core.codes import ITEM_SENTENCES, HostCode
from pmd_service.core.db import create_pool
from pmd_service.core.migrate import apply_migrations
from pmd_service.core.settings import Settings
from pmd_service.host.hostcheck import check_host
from pmd_service.mail.language import ENGLISH, KEYS, PROJECT_COPY, catalog, words
from pmd_service.web.app import create_app
from support.mailbox import Mailbox
from support.seeding import Factory
from support.stack import connected
from tests.api.exports.test_exports import artworks, request_export
from tests.conftest import TestDatabase as ServiceDatabase
from tests.helpers import as_role, direct, grant_role, mailing, request_bdr, run_worker

Client = TestClient[Any, Any]

# The expiry date as each language writes it (a check of the output, written by hand).
MONTHS = {
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre "
    "diciembre",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
}


def by_recipient(smtp: Mailbox) -> dict[str, EmailMessage]:
    return {str(m["To"]): m for m in smtp.messages}


def plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def markup(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


async def expiry(factory: Factory, bdr_id: str) -> Any:
    return await factory.pool.fetchval(
        "SELECT expires_at FROM batch_download_requests WHERE id = $1::uuid", bdr_id
    )


async def test_each_recipient_reads_their_language(
    client: Client, factory: Factory, settings: Settings, smtp: Mailbox
) -> None:
    # locale → (the language it goes out in, its subject for a ZIP of two)
    expected = {
        "es": ("es", "Tu descarga de 2 obras está lista"),
        "pt-BR": ("pt-BR", "Seu download de 2 artes está pronto"),
        "pt-PT": ("pt-BR", "Seu download de 2 artes está pronto"),  # `pt`, likely pt-BR
        "zh_cn": ("zh-Hans", "你的 2 件作品的下载已准备好"),  # its likely script
        "zh-TW": ("en", "Your download of 2 artworks is ready"),  # Hant: not zh-Hans
        "zh-Hans": ("zh-Hans", "你的 2 件作品的下载已准备好"),
        "DE-de": ("de", "Dein Download mit 2 Kunstwerken ist bereit"),  # base, any case
        None: ("en", "Your download of 2 artworks is ready"),
        "tlh-Latn": ("en", "Your download of 2 artworks is ready"),  # a tag nobody wrote
    }
    asked = {}
    for n, locale in enumerate(expected):
        owner = await factory.user(f"lang{n}", locale=locale)
        posts = [await factory.post(owner) for _ in range(2)]
        item = await request_bdr(client, owner, [p.id for p in posts], send_email=True)
        asked[f"lang{n}@example.com"] = (locale, owner, item)
    await run_worker(mailing(settings, smtp))

    got = by_recipient(smtp)
    assert sorted(got) == sorted(asked)
    for to, (locale, owner, item) in asked.items():
        language, subject = expected[locale]
        message = got[to]
        assert (message["Subject"], message["Content-Language"]) == (subject, language), locale
        assert f'<html lang="{language}"' in markup(message)
        link = f"http://pmd.test/u/{owner.sqid}/posts?bdr={item['id']}"
        assert link in plain(message) and f'href="{link}"' in markup(message)  # the page's link
    # The expiry line, as each language writes a date (UTC, said so).
    for to, (locale, _, item) in asked.items():
        when = await expiry(factory, item["id"])
        text = plain(got[to])
        if locale == "es":
            month = MONTHS["es"].split()[when.month - 1]
            assert f"hasta el {when.day} de {month} de {when.year}, " in text
        elif locale == "DE-de":
            month = MONTHS["de"].split()[when.month - 1]
            assert f"bis {when.day}. {month} {when.year}, " in text
        elif locale == "zh-Hans":
            assert f"有效期至 {when.year}年{when.month}月{when.day}日 " in text
        # Spanish writes the hour without a leading zero ("0:22"), the others with one.
        clock = f"{when.hour}:{when:%M}" if locale == "es" else f"{when:%H:%M}"
        assert f"{clock} UTC" in text or locale in (None, "zh-TW", "tlh-Latn")


async def test_plural_forms_read_right_and_failures_are_translated(
    mail_client: tuple[Settings, Client], factory: Factory, smtp: Mailbox
) -> None:
    mailed, client = mail_client
    # Russian: 3 takes the `few` forms (работы, работ); an export in its owner's language.
    owner = await factory.user("exporter", locale="ru")
    await artworks(factory, owner, [2048] * 3)
    await request_export(client, owner, send_email=True)
    # A download whose only artwork has no file fails: its email says so in Spanish.
    failing = await factory.user("failing", locale="es")
    post = await factory.post(failing, data=None)
    await request_bdr(client, failing, [post.id], send_email=True)
    await run_worker(mailed)

    got = by_recipient(smtp)
    export = got["exporter@example.com"]
    assert export["Subject"] == "Ваш экспорт из 3 работ готов"
    assert "В нём 3 работы." in plain(export)
    assert export["Content-Language"] == "ru"
    failed = got["failing@example.com"]
    assert failed["Subject"] == "No se pudo preparar tu descarga de obras"
    text = plain(failed)
    assert "No pudimos preparar tu descarga." in text
    # The reason too, by its code, in Spanish: not the API's English sentence.
    assert words(mailed, "es").text("failure_no_posts") in text
    assert ITEM_SENTENCES[HostCode.NO_POSTS] not in text


async def test_the_operators_copy_comes_first_key_by_key(
    aiohttp_client: AiohttpClient,
    factory: Factory,
    settings: Settings,
    smtp: Mailbox,
    redis_clean: None,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    # The host's shape: Spanish with a key of its own and markup in its text; Italian, which
    # the project has no copy of, with only a greeting.
    (folder / "es.json").write_text(
        json.dumps({"bdr_ready": "¡Listo! <b>{count}</b> & más", "verify_subject": "ignored"})
    )
    (folder / "IT.json").write_text(json.dumps({"greeting_named": "Ciao {handle},"}))
    mailed = mailing(settings, smtp, email_copy_dir=folder)
    client: Client = await aiohttp_client(create_app(mailed))
    spanish = await factory.user("spanish", locale="es-MX")
    italian = await factory.user("italian", locale="it")
    for owner in (spanish, italian):
        post = await factory.post(owner)
        await request_bdr(client, owner, [post.id], send_email=True)
    await run_worker(mailed)

    got = by_recipient(smtp)
    es = got["spanish@example.com"]
    text = plain(es)
    assert "¡Listo! <b>1</b> & más" in text  # the operator's key
    assert "Contiene 1 obra." in text  # the project's Spanish for the key the file lacks
    assert es["Subject"] == "Tu descarga de 1 obra está lista"
    assert "Hola, spanish:" in text
    # Escaped in HTML like any text, the link untouched.
    assert "¡Listo! &lt;b&gt;1&lt;/b&gt; &amp; más" in markup(es)
    assert "<b>1</b>" not in markup(es)
    it = got["italian@example.com"]
    assert it["Content-Language"] == "IT"
    assert plain(it).splitlines()[0] == "Ciao italian,"
    assert "Your ZIP is ready to download." in plain(it)  # English for everything else


@pytest.fixture
async def older_host(
    host_url: str, test_database: ServiceDatabase, settings: Settings
) -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    """A database whose host tables predate `users.locale`, the service's role granted on
    them (`grants` skips the column it lacks) and its migrations applied: its settings and an
    admin pool."""
    db = test_database
    async with connected(host_url) as conn:
        await conn.execute("ALTER TABLE users DROP COLUMN locale")
        await grant_role(conn, db.role, db.password)
    service_url = as_role(host_url, db.role, db.password)
    async with connected(service_url) as conn:
        await apply_migrations(conn)
    pool = await create_pool(host_url, "pmd-test", min_size=1, max_size=4)
    yield direct(settings, service_url), pool
    await pool.close()


async def test_a_host_without_the_column_gets_english(
    aiohttp_client: AiohttpClient,
    older_host: tuple[Settings, asyncpg.Pool],
    smtp: Mailbox,
    redis_clean: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, pool = older_host
    mailed = mailing(settings, smtp)
    factory = Factory(pool, mailed)
    client: Client = await aiohttp_client(create_app(mailed))
    owner = await factory.user("older", user_key=uuid.uuid4(), handle_normalized="older")
    post = await factory.post(owner)
    item = await request_bdr(client, owner, [post.id], send_email=True)
    await run_worker(mailed)
    [message] = smtp.messages
    assert message["Subject"] == "Your download of 1 artwork is ready"
    assert message["Content-Language"] == "en"
    assert item["id"] in plain(message)
    assert "UndefinedColumn" not in caplog.text
    # check-host: an older host fits, and the role needs nothing on a column it lacks.
    async with connected(settings.database_url) as conn:
        report = await check_host(conn, "public", privileges=True)
    assert not [p for p in report.column_problems if "locale" in p]
    assert report.privileges is not None and report.privileges.missing == []


def test_the_projects_copy_has_every_key_in_every_language() -> None:
    shipped = catalog(None).project
    assert sorted(f.tag for f in shipped.values()) == sorted(
        ["en", "es", "pt-BR", "fr", "de", "ru", "ja", "zh-Hans"]
    )
    for copy in shipped.values():
        assert set(copy.values) == set(KEYS), copy.tag
        assert copy.path.parent == PROJECT_COPY


def test_a_tag_without_copy_reads_what_its_likely_subtags_name() -> None:
    copy = catalog(None)
    # locale → the copy it is read in, and the region its dates and numbers keep
    expected = {
        "pt": ("pt-BR", Locale("pt")),
        "PT_pt": ("pt-BR", Locale("pt", "PT")),
        "zh": ("zh-Hans", Locale("zh")),
        "zh-CN": ("zh-Hans", Locale("zh", "CN", script="Hans")),
        "zh-sg": ("zh-Hans", Locale("zh", "SG", script="Hans")),
        "zh-Hans-SG": ("zh-Hans", Locale("zh", "SG", script="Hans")),
        "pt-BR": ("pt-BR", Locale("pt", "BR")),
        "es-MX": ("es", Locale("es", "MX")),
        # Traditional characters: English unless a file is named for them.
        "zh-TW": (ENGLISH, Locale("en")),
        "zh-Hant": (ENGLISH, Locale("en")),
        "zh-HK": (ENGLISH, Locale("en")),
        "zh_Hant_TW": (ENGLISH, Locale("en")),
    }
    for locale, (language, babel) in expected.items():
        words = copy.words(locale)
        assert (words.language, words.locale) == (language, babel), locale
        assert words.text("bdr_button") == copy.words(language).text("bdr_button"), locale
    english = copy.words(None).text("bdr_subject", count=2)
    assert copy.words("pt").text("bdr_subject", count=2) == "Seu download de 2 artes está pronto"
    assert copy.words("zh-SG").text("bdr_subject", count=2) == "你的 2 件作品的下载已准备好"
    assert copy.words("zh-TW").text("bdr_subject", count=2) == english


def test_an_operators_file_for_the_region_comes_before_the_likely_one(tmp_path: Path) -> None:
    (tmp_path / "pt-PT.json").write_text(json.dumps({"bdr_button": "Transfira-o na sua página"}))
    (tmp_path / "zh-Hant.json").write_text(json.dumps({"bdr_button": "前往你的作品頁面下載"}))
    copy = catalog(tmp_path)
    european = copy.words("pt-pt")
    assert european.language == "pt-PT"
    assert european.text("bdr_button") == "Transfira-o na sua página"
    assert european.text("greeting_anonymous") == "Olá,"  # the key it lacks: pt-BR's
    assert copy.words("pt").language == "pt-BR"  # pt-PT is not what `pt` names
    for locale in ("zh-TW", "zh-HK", "zh-Hant"):
        traditional = copy.words(locale)
        assert traditional.language == "zh-Hant", locale
        assert traditional.text("bdr_button") == "前往你的作品頁面下載"
        assert traditional.text("greeting_anonymous") == "Hi there,"  # never zh-Hans
    assert copy.words("zh-CN").language == "zh-Hans"


def test_a_malformed_or_unknown_tag_gets_english() -> None:
    english = catalog(None).words(None).text("bdr_button")
    malformed = ["", "-", "_", "123", "!!", "\x00", "x" * 300, "en@x", "12-zh", "-zh-CN"]
    unknown = ["tlh-Latn", "i-klingon", "zh-Latn", "zh-Hant-TW-u-nu-hanidec", "und"]
    for locale in malformed + unknown:
        words = catalog(None).words(locale)
        assert (words.language, words.text("bdr_button")) == (ENGLISH, english), locale
