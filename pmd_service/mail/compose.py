"""The ready/failed emails of BDRs and exports (text + HTML, in the recipient's language:
language.py) sent with aiosmtplib; without SMTP_HOST they are logged instead (and kept in dev
mode's mailbox, mailbox.py)."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib

from ..core.codes import item_error
from ..core.settings import Settings
from . import language, mailbox
from .links import page_link

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BdrMail:
    to: str
    handle: str
    user_sqid: str
    bdr_id: str
    status: str  # "ready" or "failed"
    artwork_count: int
    expires_at: datetime | None
    error_code: str | None  # the row's stored reason (core/codes.py)
    request_id: str | None = None  # of the POST that asked for it, for support to trace
    locale: str | None = None  # the recipient's `users.locale` (None: English)


def message_id(settings: Settings, bdr_id: str) -> str:
    """The same on every attempt for one BDR, so a copy that does get through twice (a server
    that took the message but never said so) can be recognised as one by mail clients."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<bdr-{bdr_id}@{domain}>"


def compose(settings: Settings, mail: BdrMail) -> EmailMessage:
    link = page_link(settings, mail.user_sqid, f"bdr={mail.bdr_id}")
    words = language.words(settings, mail.locale)
    count = mail.artwork_count
    if mail.status == "ready":
        subject = words.text("bdr_subject", count=count)
        body: list[Block] = [
            Para(("bdr_ready", {"count": count}), ("bdr_count", {"count": count})),
            Button("bdr_button"),
        ]
        if mail.expires_at is not None:
            body.append(Para(("bdr_expiry", {"expires": mail.expires_at})))
    else:
        subject = words.text("bdr_failed_subject")
        body = [Para(("bdr_failed", {}), _reason(mail.error_code)), Button("bdr_failed_button")]
    email = Email(subject, mail.handle, body, "bdr_why")
    mid = message_id(settings, mail.bdr_id)
    return email.message(settings, words, mail.to, link, mid, mail.request_id)


@dataclass(frozen=True)
class ExportMail:
    to: str
    handle: str
    user_sqid: str
    export_id: str
    status: str  # "ready" or "failed"
    artwork_count: int
    part_count: int
    total_bytes: int
    expires_at: datetime | None
    error_code: str | None
    request_id: str | None = None
    locale: str | None = None
    # An incremental export: the changes since the export it follows, which started at
    # `changes_since` (the counts null until its parts are planned).
    incremental: bool = False
    changes_since: datetime | None = None
    added_count: int | None = None
    changed_count: int | None = None
    removed_count: int = 0


def compose_export(settings: Settings, mail: ExportMail) -> EmailMessage:
    """The page's link, never the files': a part is fetched signed in, and checked there."""
    link = page_link(settings, mail.user_sqid, f"export={mail.export_id}")
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    words = language.words(settings, mail.locale)
    count = mail.artwork_count
    if mail.status == "ready":
        parts = {"parts": mail.part_count, "size": words.size(mail.total_bytes)}
        if mail.incremental and mail.changes_since is not None and mail.added_count is not None:
            changes = {
                "since": mail.changes_since,
                "added": mail.added_count,
                "changed": mail.changed_count or 0,
                "removed": mail.removed_count,
            }
            subject = words.text("export_changes_subject", since=mail.changes_since)
            opening: list[Line] = [("export_changes_ready", changes)]
        else:
            subject = words.text("export_subject", count=count)
            opening = [("export_ready", {"count": count}), ("export_count", {"count": count})]
        body: list[Block] = [Para(*opening, ("export_parts", parts)), Button("export_button")]
        if mail.expires_at is not None:
            body.append(Para(("export_expiry", {"expires": mail.expires_at}), ("export_check", {})))
        else:
            body.append(Para(("export_check", {})))
    else:
        subject = words.text("export_failed_subject")
        lines: list[Line] = [("export_failed", {}), _reason(mail.error_code)]
        if mail.expires_at is not None:
            lines.append(("export_failed_kept", {"expires": mail.expires_at}))
        body = [Para(*lines), Button("export_failed_button")]
    email = Email(subject, mail.handle, body, "export_why")
    mid = f"<export-{mail.export_id}@{domain}>"
    return email.message(settings, words, mail.to, link, mid, mail.request_id)


# One line of copy: its key and the values of its placeholders.
Line = tuple[str, dict[str, object]]


def _reason(stored: str | None) -> Line:
    """What went wrong: the fixed sentence of the failure's code, in the person's language."""
    return (f"failure_{item_error(stored).code}", {})


@dataclass(frozen=True)
class Para:
    """A paragraph of lines."""

    lines: tuple[Line, ...]

    def __init__(self, *lines: Line) -> None:
        object.__setattr__(self, "lines", lines)


@dataclass(frozen=True)
class Button:
    """The link to the posts page, under the key's label."""

    key: str


Block = Para | Button


@dataclass(frozen=True)
class Email:
    """Every email's shape: a greeting, the body, the link again for a client without buttons,
    why it was sent, and the footer; as text and as HTML from the same copy."""

    subject: str
    handle: str
    body: list[Block]
    why: str

    def message(
        self,
        settings: Settings,
        words: language.Words,
        to: str,
        link: str,
        message_id: str,
        request_id: str | None,
    ) -> EmailMessage:
        site = urlsplit(settings.base_url).netloc
        greeting: Line = ("greeting_anonymous", {})
        if self.handle:
            greeting = ("greeting_named", {"handle": self.handle})
        text = [words.text(greeting[0], **greeting[1])]
        markup = [f"<p>{words.html(greeting[0], **greeting[1])}</p>"]
        for block in self.body:
            if isinstance(block, Button):
                label = words.text(block.key)
                text.append(f"{label}\n{link}")
                markup.append(
                    f'<p><a href="{html.escape(link)}" style="{BUTTON_STYLE}">'
                    f"{html.escape(label)}</a></p>"
                )
            else:
                text.append("\n".join(words.text(key, **values) for key, values in block.lines))
                shown = "<br>".join(words.html(key, **values) for key, values in block.lines)
                markup.append(f"<p>{shown}</p>")
        markup.append(
            f'<p style="{SMALL_STYLE}">{words.html("bdr_fallback_link")}<br>'
            f'<a href="{html.escape(link)}">{html.escape(link)}</a></p>'
        )
        text.append(words.text(self.why))
        markup.append(f'<p style="{SMALL_STYLE}">{words.html(self.why)}</p>')
        text.append(f"-- \n{words.text('footer', site=site)}")
        markup.append(f'<p style="{SMALL_STYLE}">{words.html("footer", site=site)}</p>')

        msg = EmailMessage()
        msg["From"] = settings.mail_from
        msg["To"] = to
        msg["Subject"] = self.subject
        msg["Message-ID"] = message_id
        if request_id:
            msg["X-Request-ID"] = request_id
        msg.set_content("\n\n".join(text) + "\n")
        direction = words.locale.text_direction
        msg.add_alternative(
            f'<!doctype html><html lang="{html.escape(words.language)}" dir="{direction}"><head>'
            f'<meta charset="utf-8"><title>{html.escape(self.subject)}</title></head>'
            f'<body style="{BODY_STYLE}">{"".join(markup)}</body></html>',
            subtype="html",
        )
        # RFC 3282: the language the copy is in (the dev mailbox shows it). Set last: setting
        # the content drops every Content-* header already there.
        msg["Content-Language"] = words.language
        return msg


BODY_STYLE = "font-family: sans-serif; line-height: 1.5; color: #1a1a1a"
BUTTON_STYLE = (
    "display: inline-block; padding: 10px 18px; background: #2d5bd3; color: #ffffff; "
    "text-decoration: none; border-radius: 6px; font-weight: bold"
)
SMALL_STYLE = "font-size: small; color: #555555"


class Attempt:
    """How far one send got, for telling a failure that delivered nothing from one that may have.

    Before DATA the server holds nothing: any failure can be retried. Once DATA is under way the
    server may store the message even if its reply never reaches us (a slow server answering
    250 after our read timeout; a connection lost after the final dot): retrying then sends a
    second copy. Only an explicit error reply to DATA says it was not taken.

    `before_data`, if given, runs just before DATA; if it raises, DATA never starts.
    """

    def __init__(self, before_data: Callable[[], Awaitable[None]] | None = None) -> None:
        self.data_started = False
        self._before_data = before_data

    async def starting_data(self) -> None:
        if self._before_data is not None:
            await self._before_data()
        self.data_started = True

    def may_have_delivered(self, exc: BaseException) -> bool:
        return self.data_started and not isinstance(exc, aiosmtplib.SMTPResponseException)


class _SMTP(aiosmtplib.SMTP):
    """aiosmtplib's client, telling `attempt` when DATA starts (sendmail calls `data`)."""

    def __init__(self, attempt: Attempt, **options: Any) -> None:
        super().__init__(**options)
        self._attempt = attempt

    async def data(self, message: str | bytes, /, **options: Any) -> aiosmtplib.SMTPResponse:
        await self._attempt.starting_data()
        return await super().data(message, **options)


class PlainAuthRefused(aiosmtplib.SMTPException):
    """SMTP_USERNAME's password would cross the network in clear: not sent."""


async def send(settings: Settings, message: EmailMessage, attempt: Attempt | None = None) -> None:
    """Send, or log when no SMTP server is configured. Raises on SMTP failure; `attempt` tells
    the caller whether that failure may still have delivered the message."""
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
    # No credentials here: aiosmtplib would log in on connect, whatever the connection became.
    # The login below comes once it is known whether STARTTLS took place.
    client = _SMTP(
        attempt or Attempt(),
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        start_tls=settings.smtp_starttls,
        timeout=settings.smtp_timeout,
    )
    async with client:
        if settings.smtp_username is not None:
            if not encrypted(client) and not settings.smtp_allow_plain_auth:
                raise PlainAuthRefused(_plain_auth_refusal(settings))
            await client.login(settings.smtp_username, settings.smtp_password or "")
        await client.send_message(message)


def encrypted(client: aiosmtplib.SMTP) -> bool:
    return client.get_transport_info("sslcontext") is not None


def _plain_auth_refusal(settings: Settings) -> str:
    why = (
        "SMTP_STARTTLS=false"
        if settings.smtp_starttls is False
        else "the server offered no STARTTLS"
    )
    return (
        f"SMTP: not logging in to {settings.smtp_host}:{settings.smtp_port} as "
        f"{settings.smtp_username}: the connection is not encrypted ({why}) and the password "
        "would cross the network in clear. Use a server that offers STARTTLS, or set "
        "SMTP_ALLOW_PLAIN_AUTH=true to send it anyway"
    )
