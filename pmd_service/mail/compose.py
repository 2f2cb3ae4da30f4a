"""Every email's shape (text + HTML, in the recipient's language), which each feature's mail.py
fills, and its sending with aiosmtplib; without SMTP_HOST, logged (and kept in dev mode)."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import aiosmtplib

from ..core.codes import item_error
from ..core.settings import Settings
from . import language, mailbox
from .links import page_link

log = logging.getLogger(__name__)
R = TypeVar("R", bound="Recipient")  # a feature's email's fields


# One line of copy: its key and the values of its placeholders.
Line = tuple[str, dict[str, object]]


def reason(stored: str | None) -> Line:
    """What went wrong: the fixed sentence of the failure's code, in the person's language."""
    return (f"failure_{item_error(stored).code}", {})


class Para:
    """A paragraph of lines."""

    def __init__(self, *lines: Line) -> None:
        self.lines = lines


@dataclass(frozen=True)
class Button:
    """The link to the posts page, under the key's label."""

    key: str


Block = Para | Button


@dataclass(frozen=True)
class Recipient:
    """The fields every feature's email has; the last two keyword-only, so a feature's follow."""

    to: str
    handle: str
    user_sqid: str  # whose posts page the link opens
    about: str  # the id the link opens there and the Message-ID names
    request_id: str | None = field(default=None, kw_only=True)  # the POST's that asked, to trace
    locale: str | None = field(default=None, kw_only=True)  # `users.locale` (None: English)


@dataclass(frozen=True)
class Email:
    """What an email says, in the recipient's words: its subject, its body, why it was sent."""

    subject: str
    body: list[Block]
    why: str


@dataclass(frozen=True)
class FeatureEmail(Generic[R]):
    """A feature's email, as text and HTML from the same copy: what it says (`write`), its link
    (`?{link}=<about>` on the posts page) and its Message-ID (`<{kind}-<about>@…>`, the same on
    every attempt, so mail clients see a copy sent twice as one)."""

    kind: str
    link: str
    write: Callable[[language.Words, R], Email]

    def __call__(self, settings: Settings, mail: R) -> EmailMessage:
        words = language.words(settings, mail.locale)
        email = self.write(words, mail)
        link = page_link(settings, mail.user_sqid, f"{self.link}={mail.about}")
        href, site = html.escape(link), urlsplit(settings.base_url).netloc
        greeting: Line = ("greeting_anonymous", {})
        if mail.handle:
            greeting = ("greeting_named", {"handle": mail.handle})
        text: list[str] = []
        markup: list[str] = []
        for block in (Para(greeting), *email.body):
            if isinstance(block, Button):
                label = words.text(block.key)
                text.append(f"{label}\n{link}")
                button = f'<a href="{href}" style="{BUTTON_STYLE}">{html.escape(label)}</a>'
                markup.append(f"<p>{button}</p>")
            else:
                text.append("\n".join(words.text(key, **values) for key, values in block.lines))
                shown = "<br>".join(words.html(key, **values) for key, values in block.lines)
                markup.append(f"<p>{shown}</p>")
        text += (words.text(email.why), f"-- \n{words.text('footer', site=site)}")
        fallback = f'{words.html("bdr_fallback_link")}<br><a href="{href}">{href}</a>'
        small = (fallback, words.html(email.why), words.html("footer", site=site))
        markup += (f'<p style="{SMALL_STYLE}">{line}</p>' for line in small)

        msg = EmailMessage()
        msg["From"] = settings.mail_from
        msg["To"] = mail.to
        msg["Subject"] = email.subject
        domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
        msg["Message-ID"] = f"<{self.kind}-{mail.about}@{domain}>"
        if mail.request_id:
            msg["X-Request-ID"] = mail.request_id
        msg.set_content("\n\n".join(text) + "\n")
        direction = words.locale.text_direction
        msg.add_alternative(
            f'<!doctype html><html lang="{html.escape(words.language)}" dir="{direction}"><head>'
            f'<meta charset="utf-8"><title>{html.escape(email.subject)}</title></head>'
            f'<body style="{BODY_STYLE}">{"".join(markup)}</body></html>',
            subtype="html",
        )
        # RFC 3282; set last, as setting the content drops every Content-* header.
        msg["Content-Language"] = words.language
        return msg


BODY_STYLE = "font-family: sans-serif; line-height: 1.5; color: #1a1a1a"
BUTTON_STYLE = (
    "display: inline-block; padding: 10px 18px; background: #2d5bd3; color: #ffffff; "
    "text-decoration: none; border-radius: 6px; font-weight: bold"
)
SMALL_STYLE = "font-size: small; color: #555555"


@dataclass
class Attempt:
    """How far one send got: once DATA is under way the server may hold the message unless it
    replied with an error; `before_data` runs just before DATA, and raising stops it."""

    before_data: Callable[[], Awaitable[None]] | None = None
    data_started: bool = False

    def may_have_delivered(self, exc: BaseException) -> bool:
        return self.data_started and not isinstance(exc, aiosmtplib.SMTPResponseException)


class _SMTP(aiosmtplib.SMTP):
    """aiosmtplib's client, telling `attempt` when DATA starts (sendmail calls `data`)."""

    def __init__(self, attempt: Attempt, **options: Any) -> None:
        super().__init__(**options)
        self._attempt = attempt

    async def data(self, message: str | bytes, /, **options: Any) -> aiosmtplib.SMTPResponse:
        if self._attempt.before_data is not None:
            await self._attempt.before_data()
        self._attempt.data_started = True
        return await super().data(message, **options)


class PlainAuthRefused(aiosmtplib.SMTPException):
    """SMTP_USERNAME's password would cross the network in clear: not sent."""


async def send(settings: Settings, message: EmailMessage, attempt: Attempt | None = None) -> None:
    """Send, or log when no SMTP server is configured; raises on SMTP failure."""
    if settings.smtp_host is None:
        if settings.dev_mode:  # kept for the dev server's /dev/mail, so it can be read
            await asyncio.to_thread(mailbox.keep, settings, message)
            log.info(
                "email (SMTP_HOST unset) kept in the dev mailbox, %s/dev/mail: to=%s subject=%r",
                settings.base_url,
                message["To"],
                message["Subject"],
            )
            return
        log.info(
            "email (SMTP_HOST unset, not sent) to=%s subject=%r", message["To"], message["Subject"]
        )
        return
    # No credentials here: the login below comes once it is known whether STARTTLS took place.
    client = _SMTP(
        attempt or Attempt(),
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        start_tls=settings.smtp_starttls,
        timeout=settings.smtp_timeout,
    )
    async with client:
        if settings.smtp_username is not None:
            encrypted = client.get_transport_info("sslcontext") is not None
            if not encrypted and not settings.smtp_allow_plain_auth:
                why = (
                    "SMTP_STARTTLS=false"
                    if settings.smtp_starttls is False
                    else "the server offered no STARTTLS"
                )
                raise PlainAuthRefused(
                    f"SMTP: not logging in to {settings.smtp_host}:{settings.smtp_port} as "
                    f"{settings.smtp_username}: the connection is not encrypted ({why}) and the "
                    "password would cross the network in clear. Use a server that offers "
                    "STARTTLS, or set SMTP_ALLOW_PLAIN_AUTH=true to send it anyway"
                )
            await client.login(settings.smtp_username, settings.smtp_password or "")
        await client.send_message(message)
