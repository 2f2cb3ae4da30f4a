"""What a build reports on its item, a BDR's or an export's: its status, its progress and the
artworks it skipped."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from ..core.codes import ItemError, item_error

Status = Literal["pending", "processing", "ready", "failed", "expired", "cancelled"]

SkipReason = Literal[
    "deleted",
    "not_owner",
    "playlist",
    "file_missing",
    "fetch_failed",
    # An artwork's palette (zipbuild/palette.py): too many colours, or not decodable in bounds.
    "too_many_colours",
    "undecodable",
]
# An artwork's working files beside its image (zipbuild/working_files.py).
Kind = Literal["layers", "upscaled", "palette"]


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
            "`.mkpx` layers file, declared by the site but not found; `palette`: its palette "
            "files, for an artwork of more than 256 colours, `too_many_colours`); the artwork "
            "itself is in the ZIP. Absent when the artwork was left out"
        ),
    ] = None


ERROR_CODE = (
    "When it failed: the host's code for why (`user_not_found`, `no_posts`, `internal`; "
    "docs/errors.md), which the host's app translates; null otherwise"
)
ERROR_REASON = (
    "When it failed: this service's finer name for why (`too_large`, `unexpected`, …; "
    "docs/errors.md); null otherwise"
)
ERROR_MESSAGE = "When it failed: the fixed sentence of `error_code`; null otherwise"


class Failure(msgspec.Struct):
    """What a failed item says (null fields for any other)."""

    error_code: Annotated[str | None, Meta(description=ERROR_CODE)] = None
    error_reason: Annotated[str | None, Meta(description=ERROR_REASON)] = None
    error_message: Annotated[str | None, Meta(description=ERROR_MESSAGE)] = None


def failure(status: str, stored_code: str | None, stored_message: str | None) -> Failure:
    """A row's failure as an item shows it, from its stored code, never its stored text."""
    if status != "failed" and stored_code is None and stored_message is None:
        return Failure()
    err: ItemError = item_error(stored_code)
    return Failure(str(err.code), str(err.reason), err.message)


REMOVED_AT = (
    "When its owner (or a moderator acting for them) removed it: its status is then `expired`, "
    "as when its date passes, and this tells the two apart. Null for anything else (expired "
    "by date or because its file was lost, cancelled, failed, still running or ready)"
)
