"""Dev mode's mailbox: with SMTP_HOST unset, each email the worker would send is kept as a file
under {PMD_DATA_DIR}/mailbox (shared with the server), listed at /dev/mail (web/dev_pages.py)."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from ..core.settings import Settings

MAILBOX_FOLDER = "mailbox"
# The newest are kept; older ones are removed as new ones come.
KEEP_AT_MOST = 200
# `{nanoseconds since the epoch}-{random}.eml`: names sort by arrival.
NAME_RE = re.compile(r"(?P<ns>[0-9]{20})-[0-9a-f]{32}\.eml")


@dataclass(frozen=True)
class KeptMail:
    name: str
    kept_at: datetime
    to: str
    subject: str
    language: str  # its Content-Language: the language it was written in ("" if none)


def folder(settings: Settings) -> Path:
    return settings.data_dir / MAILBOX_FOLDER


def keep(settings: Settings, message: EmailMessage) -> str:
    """Written whole (a temporary file renamed), so a reader never sees half of one; its name."""
    where = folder(settings)
    where.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex}.eml"
    temporary = where / f".{name}.part"
    temporary.write_bytes(message.as_bytes(policy=policy.SMTP))
    temporary.replace(where / name)
    for old in _names(where)[:-KEEP_AT_MOST]:
        (where / old).unlink(missing_ok=True)
    return name


def _names(where: Path) -> list[str]:
    """The kept emails' names, oldest first."""
    try:
        return sorted(p.name for p in where.iterdir() if NAME_RE.fullmatch(p.name))
    except FileNotFoundError:
        return []


def kept(settings: Settings) -> list[KeptMail]:
    """Every kept email, newest first."""
    mails = []
    for name in reversed(_names(folder(settings))):
        message = read(settings, name)
        if message is not None:
            kept_at = datetime.fromtimestamp(int(name.partition("-")[0]) / 1e9, UTC)
            headers = (str(message[h] or "") for h in ("To", "Subject", "Content-Language"))
            mails.append(KeptMail(name, kept_at, *headers))
    return mails


def read(settings: Settings, name: str) -> EmailMessage | None:
    """One kept email, or None when `name` names none (only a kept email's name is read)."""
    if not NAME_RE.fullmatch(name):
        return None
    try:
        data = (folder(settings) / name).read_bytes()
    except FileNotFoundError:
        return None
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message
