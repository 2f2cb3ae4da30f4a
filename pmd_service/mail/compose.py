"""BDR emails (text + HTML) sent with aiosmtplib; without SMTP_HOST they are logged instead (and
kept in dev mode's mailbox, mailbox.py)."""

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

import aiosmtplib

from ..core.settings import Settings
from . import mailbox

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
    error_message: str | None
    request_id: str | None = None  # of the POST that asked for it, for support to trace


def message_id(settings: Settings, bdr_id: str) -> str:
    """The same on every attempt for one BDR, so a copy that does get through twice (a server
    that took the message but never said so) can be recognised as one by mail clients."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<bdr-{bdr_id}@{domain}>"


def compose(settings: Settings, mail: BdrMail) -> EmailMessage:
    link = f"{settings.base_url}/u/{mail.user_sqid}/posts?bdr={mail.bdr_id}"
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = mail.to
    msg["Message-ID"] = message_id(settings, mail.bdr_id)
    if mail.request_id:
        msg["X-Request-ID"] = mail.request_id
    if mail.status == "ready":
        noun = "artwork" if mail.artwork_count == 1 else "artworks"
        expiry = mail.expires_at.strftime("%d %B %Y, %H:%M UTC") if mail.expires_at else "soon"
        msg["Subject"] = f"Your download of {mail.artwork_count} {noun} is ready"
        text = (
            f"Hi {mail.handle},\n\n"
            f"Your ZIP of {mail.artwork_count} {noun} is ready to download:\n{link}\n\n"
            f"The link works until {expiry}.\n"
        )
        body = (
            f"<p>Hi {html.escape(mail.handle)},</p>"
            f"<p>Your ZIP of <strong>{mail.artwork_count} {noun}</strong> is ready.</p>"
            f'<p><a href="{html.escape(link)}">Download it from your posts page</a></p>'
            f"<p>The link works until {html.escape(expiry)}.</p>"
        )
    else:
        reason = mail.error_message or "An unexpected error stopped it."
        msg["Subject"] = "Your artwork download could not be prepared"
        text = (
            f"Hi {mail.handle},\n\n"
            f"We could not prepare your download: {reason}\n\n"
            f"You can request it again from your posts page:\n{link}\n"
        )
        body = (
            f"<p>Hi {html.escape(mail.handle)},</p>"
            f"<p>We could not prepare your download: {html.escape(reason)}</p>"
            f'<p>You can <a href="{html.escape(link)}">request it again from your posts page</a>.</p>'
        )
    msg.set_content(text)
    msg.add_alternative(f"<!doctype html><html><body>{body}</body></html>", subtype="html")
    return msg


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
    error_message: str | None
    request_id: str | None = None


def compose_export(settings: Settings, mail: ExportMail) -> EmailMessage:
    """The page's link, never the files': a part is fetched signed in, and checked there."""
    link = f"{settings.base_url}/u/{mail.user_sqid}/posts?export={mail.export_id}"
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = mail.to
    msg["Message-ID"] = f"<export-{mail.export_id}@{domain}>"
    if mail.request_id:
        msg["X-Request-ID"] = mail.request_id
    expiry = mail.expires_at.strftime("%d %B %Y, %H:%M UTC") if mail.expires_at else None
    if mail.status == "ready":
        noun = "artwork" if mail.artwork_count == 1 else "artworks"
        parts = "1 part" if mail.part_count == 1 else f"{mail.part_count} parts"
        msg["Subject"] = f"Your export of {mail.artwork_count} {noun} is ready"
        text = (
            f"Hi {mail.handle},\n\n"
            f"Your full export is ready: {mail.artwork_count} {noun} in {parts} "
            f"({_size(mail.total_bytes)}). Download the parts from your posts page:\n{link}\n\n"
            f"They can be downloaded until {expiry or 'they expire'}. Each part is a BagIt bag "
            "with a README.txt that says how to check it.\n"
        )
        body = (
            f"<p>Hi {html.escape(mail.handle)},</p>"
            f"<p>Your full export is ready: <strong>{mail.artwork_count} {noun}</strong> in "
            f"{parts} ({_size(mail.total_bytes)}).</p>"
            f'<p><a href="{html.escape(link)}">Download the parts from your posts page</a></p>'
            f"<p>They can be downloaded until {html.escape(expiry or 'they expire')}. Each part "
            "is a BagIt bag with a README.txt that says how to check it.</p>"
        )
    else:
        reason = mail.error_message or "An unexpected error stopped it."
        kept = f" The parts already built can be downloaded until {expiry}." if expiry else ""
        msg["Subject"] = "Your export could not be completed"
        text = (
            f"Hi {mail.handle},\n\nWe could not complete your export: {reason}{kept}\n\n"
            f"You can request a new export from your posts page:\n{link}\n"
        )
        body = (
            f"<p>Hi {html.escape(mail.handle)},</p>"
            f"<p>We could not complete your export: {html.escape(reason)}{html.escape(kept)}</p>"
            f'<p>You can <a href="{html.escape(link)}">request a new export from your posts '
            "page</a>.</p>"
        )
    msg.set_content(text)
    msg.add_alternative(f"<!doctype html><html><body>{body}</body></html>", subtype="html")
    return msg


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"  # pragma: no cover


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
