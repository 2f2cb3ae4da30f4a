"""Dev mode's routes: the demo user's page at `/`, artwork files, and the emails kept unsent."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from email.message import EmailMessage

from aiohttp import web

from ..api.keys import DB_POOL, SETTINGS
from ..core.codes import Code
from ..core.problems import not_found
from ..dev.demo_user import DEMO_HANDLE, demo_user_sqid, language_shown
from ..host.vault import VaultPathError, artwork_path
from ..mail import mailbox

_VAULT_NAME_RE = re.compile(r"^([0-9a-fA-F-]{36})\.(png|gif|webp|bmp)$")


async def dev_root(request: web.Request) -> web.Response:
    sqid = await demo_user_sqid(request.app[DB_POOL])
    if sqid is None:
        raise not_found(
            f"There is no @{DEMO_HANDLE} user yet: start the service with `make run`.",
            code=Code.NOT_FOUND,
        )
    raise web.HTTPFound(f"/u/{sqid}/posts")


async def dev_vault(request: web.Request) -> web.FileResponse:
    """Artwork files for thumbnails, as the host site serves `art_url`; never inside ZIP_PATH."""
    settings = request.app[SETTINGS]
    missing = not_found("No such artwork file.", code=Code.NOT_FOUND)
    match = _VAULT_NAME_RE.match(request.match_info["name"])
    if match is None:
        raise missing
    try:
        path = artwork_path(
            settings.vault_path, request.match_info["shard"], uuid.UUID(match[1]), match[2]
        )
    except (VaultPathError, ValueError):
        raise missing from None
    if path.is_relative_to(settings.zip_path.resolve()) or not path.is_file():
        raise missing
    return web.FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})


MAILBOX_PATH = "/dev/mail"
# What dev mode adds to the page's header (pages.HEADER_LINKS).
HEADER_LINKS = (
    f'<a id="dev-mailbox" class="dev-link" href="{MAILBOX_PATH}" target="_blank" '
    'rel="noopener">Mailbox (dev)</a>'
)
_MAIL_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_URL_RE = re.compile(r"https?://[^\s<>\"]+")


def _mail_page(title: str, body: str) -> web.Response:
    return web.Response(
        text=(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title>"
            '<link rel="stylesheet" href="/static/pmd/styles.css"></head>'
            f'<body><main class="mailbox">{body}</main></body></html>'
        ),
        content_type="text/html",
        headers=_MAIL_HEADERS,
    )


async def dev_mailbox(request: web.Request) -> web.Response:
    """The emails kept instead of sent, newest first."""
    mails = await asyncio.to_thread(mailbox.kept, request.app[SETTINGS])
    rows = "".join(
        f'<li><a href="{MAILBOX_PATH}/{m.name}"{_lang(m.language)}>'
        f"{html.escape(m.subject or '(no subject)')}</a>"
        f" to {html.escape(m.to)}, "
        f'<time datetime="{m.kept_at.isoformat()}">'
        f"{m.kept_at.strftime('%Y-%m-%d %H:%M:%S UTC')}</time>, in "
        f'<span class="mail-language">{html.escape(language_shown(m.language))}</span></li>'
        for m in mails
    )
    listing = (
        f'<ul id="mail-list">{rows}</ul>'
        if rows
        else '<p id="mail-empty">No email yet. Ask for a download or an export with "Email me '
        'when it is ready" on the dashboard; its email shows here once the worker sends it.</p>'
    )
    return _mail_page(
        "Mailbox (dev)",
        "<h1>Mailbox (dev)</h1><p>Dev mode sends no email (SMTP_HOST is unset): what the "
        "worker would have sent is kept here, newest first.</p>" + listing,
    )


async def dev_mail(request: web.Request) -> web.Response:
    """One kept email, its text with the links it carries."""
    message = await asyncio.to_thread(
        mailbox.read, request.app[SETTINGS], request.match_info["name"]
    )
    if message is None:
        raise not_found("No such email in the dev mailbox.", code=Code.NOT_FOUND)
    heads = "".join(
        f"<dt>{name}</dt><dd>{html.escape(str(message[name] or ''))}</dd>"
        for name in ("Subject", "From", "To", "Message-ID")
    )
    language = str(message["Content-Language"] or "")
    heads += f'<dt>Language</dt><dd id="mail-language">{html.escape(language_shown(language))}</dd>'
    body = message.get_body(("plain",))
    plain = body.get_content() if isinstance(body, EmailMessage) else ""
    text = _URL_RE.sub(lambda m: f'<a href="{m[0]}">{m[0]}</a>', html.escape(plain))
    return _mail_page(
        str(message["Subject"] or "Email"),
        f'<p><a href="{MAILBOX_PATH}">All emails</a></p><h1>{html.escape(str(message["Subject"]))}'
        f'</h1><dl class="mail-head">{heads}</dl><pre id="mail-text"{_lang(language)}>{text}</pre>',
    )


def _lang(tag: str) -> str:
    """A `lang` attribute, so the text is read out in its own language."""
    return f' lang="{html.escape(tag)}"' if tag else ""


def setup(app: web.Application) -> None:
    app.router.add_get("/", dev_root, name="dev_root")
    app.router.add_get("/vault/{shard:.+}/{name}", dev_vault, name="dev_vault")
    app.router.add_get(MAILBOX_PATH, dev_mailbox, name="dev_mailbox")
    app.router.add_get(MAILBOX_PATH + "/{name}", dev_mail, name="dev_mail")
