"""A BDR's email, to whoever asked, once it is ready or failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ...mail.compose import Block, Button, Email, FeatureEmail, Para, Recipient, reason
from ...mail.language import Words
from ...mail.notify import EmailTable, takes


@dataclass(frozen=True)
class BdrMail(Recipient):
    status: str  # "ready" or "failed"
    artwork_count: int
    expires_at: datetime | None
    error_code: str | None  # the row's stored reason (core/codes.py)


def _write(words: Words, mail: BdrMail) -> Email:
    count = mail.artwork_count
    if mail.status == "ready":
        body: list[Block] = [
            Para(("bdr_ready", {"count": count}), ("bdr_count", {"count": count})),
            Button("bdr_button"),
        ]
        if mail.expires_at is not None:
            body.append(Para(("bdr_expiry", {"expires": mail.expires_at})))
        return Email(words.text("bdr_subject", count=count), body, "bdr_why")
    body = [Para(("bdr_failed", {}), reason(mail.error_code)), Button("bdr_failed_button")]
    return Email(words.text("bdr_failed_subject"), body, "bdr_why")


compose = FeatureEmail("bdr", "bdr", _write)

# Taken atomically, so only one run sends it, to whoever asked (a moderator too), in their language.
_TAKE_EMAIL = """
UPDATE batch_download_requests t {take}
FROM users asker, users owner
WHERE {take_row}
  AND asker.id = coalesce(t.requested_by, t.user_id) AND owner.id = t.user_id
RETURNING t.email_sent_at AS taken_at, t.request_id, t.id::text AS about, t.status,
          -- A skipped entry naming a `file` (a missing layers file) left its artwork in.
          t.artwork_count - (SELECT count(*) FROM jsonb_array_elements(t.skipped) s
                             WHERE NOT s ? 'file')::int AS artwork_count,
          t.expires_at, t.error_code, asker.email AS "to", asker.handle,
          {locale} AS locale, owner.public_sqid AS user_sqid
"""
EMAIL = EmailTable("BDR", "batch_download_requests", *takes(_TAKE_EMAIL, "asker"), BdrMail, compose)
SQL_TAKE_EMAIL, SQL_EMAILS_OWED, send_bdr_email = EMAIL.take, EMAIL.sql_emails_owed, EMAIL.send
