"""What a build reports on its item, a BDR's or an export's: its status, its progress and the
artworks it skipped (bdr/schemas.py and exports/schemas.py build their items from these)."""

from __future__ import annotations

from typing import Literal

import msgspec

Status = Literal["pending", "processing", "ready", "failed", "expired", "cancelled"]

SkipReason = Literal["deleted", "not_owner", "playlist", "file_missing", "fetch_failed"]


class Progress(msgspec.Struct):
    done: int
    total: int


class Skipped(msgspec.Struct):
    post_id: int
    public_sqid: str | None
    reason: SkipReason


REMOVED_AT = (
    "When its owner (or a moderator acting for them) removed it: its status is then `expired`, "
    "as when its date passes, and this tells the two apart. Null for anything else (expired "
    "by date or because its file was lost, cancelled, failed, still running or ready)"
)
