"""A BDR's ready/failed email: taken at most once while its sender lives, retried by the sweep if
SMTP fails before the message went out or its sender died (mail/notify.py sends it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from ..core.settings import Settings
from ..mail import language
from ..mail.compose import Block, Button, Email, Para, message_id, reason
from ..mail.links import page_link
from ..mail.notify import EmailTable, takes


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
        body = [Para(("bdr_failed", {}), reason(mail.error_code)), Button("bdr_failed_button")]
    email = Email(subject, mail.handle, body, "bdr_why")
    mid = message_id(settings, "bdr", mail.bdr_id)
    return email.message(settings, words, mail.to, link, mid, mail.request_id)


# Taking the email is the atomic step: of two runs (a repeated job, the sweep) only one gets
# the row back, so a person never receives it twice. Its lease (mail/notify.py's TAKE) and its
# `email_sent_at`, which names the take, let only its own sender end or release it. It goes to
# whoever asked (a moderator asking on a user's behalf gets it), in their language (English on
# a host without `users.locale`), with the link to the user's posts page.
_TAKE_EMAIL = """
UPDATE batch_download_requests t {take}
FROM users asker, users owner
WHERE {take_row}
  AND asker.id = coalesce(t.requested_by, t.user_id) AND owner.id = t.user_id
RETURNING t.email_sent_at AS taken_at, t.request_id, t.id::text AS bdr_id, t.status,
          -- A skipped entry naming a `file` (a missing layers file) left its artwork in.
          t.artwork_count - (SELECT count(*) FROM jsonb_array_elements(t.skipped) s
                             WHERE NOT s ? 'file')::int AS artwork_count,
          t.expires_at, t.error_code, asker.email AS "to", asker.handle,
          {locale} AS locale, owner.public_sqid AS user_sqid
"""
SQL_TAKE_EMAIL, SQL_TAKE_EMAIL_IN_ENGLISH = takes(_TAKE_EMAIL, "asker")
EMAIL = EmailTable(
    "BDR", "batch_download_requests", SQL_TAKE_EMAIL, SQL_TAKE_EMAIL_IN_ENGLISH, BdrMail, compose
)
SQL_EMAILS_OWED = EMAIL.sql_emails_owed
send_bdr_email = EMAIL.send
