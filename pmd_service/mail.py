"""BDR emails (text + HTML) sent with aiosmtplib; without SMTP_HOST they are logged instead."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

import aiosmtplib

from .settings import Settings

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


def compose(settings: Settings, mail: BdrMail) -> EmailMessage:
    link = f"{settings.base_url}/u/{mail.user_sqid}/posts?bdr={mail.bdr_id}"
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = mail.to
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


async def send(settings: Settings, message: EmailMessage) -> None:
    """Send, or log when no SMTP server is configured. Raises on SMTP failure."""
    if settings.smtp_host is None:
        log.info(
            "email (SMTP_HOST unset, not sent) to=%s subject=%r", message["To"], message["Subject"]
        )
        return
    await aiosmtplib.send(
        message,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        start_tls=settings.smtp_starttls,
        timeout=10,
    )
