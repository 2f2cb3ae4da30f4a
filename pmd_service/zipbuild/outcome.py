"""What a build reports on its item, a BDR's or an export's: its status, its progress and the
artworks it skipped (bdr/schemas.py and exports/schemas.py build their items from these)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Status = Literal["pending", "processing", "ready", "failed", "expired", "cancelled"]

SkipReason = Literal["deleted", "not_owner", "playlist", "file_missing", "fetch_failed"]
# An artwork's working files beside its image (zipbuild/working_files.py).
Kind = Literal["layers", "upscaled"]


class Progress(msgspec.Struct):
    done: int
    total: int


class Skipped(msgspec.Struct, omit_defaults=True):
    post_id: int
    public_sqid: str | None
    reason: SkipReason
    file: Annotated[
        Kind | None,
        Meta(
            description="Set when only this file of the artwork was left out (`layers`: its "
            "`.mkpx` layers file, declared by the site but not found); the artwork itself is "
            "in the ZIP. Absent when the artwork was left out"
        ),
    ] = None


ERROR_CODE = (
    "When failed: what the host's app translates (`user_not_found`, `no_posts`, "
    "`too_large`, `internal`; docs/errors.md), beside `error_message`; null otherwise (and "
    "for one failed by an older release)"
)


REMOVED_AT = (
    "When its owner (or a moderator acting for them) removed it: its status is then `expired`, "
    "as when its date passes, and this tells the two apart. Null for anything else (expired "
    "by date or because its file was lost, cancelled, failed, still running or ready)"
)
