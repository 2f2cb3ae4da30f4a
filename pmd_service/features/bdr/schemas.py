"""BDR request and item shapes (API, SSE and OpenAPI share them)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from msgspec import Meta

from ...core.payload_sql import columns
from ...host.eligibility import PostIds, Sqid
from ...zipbuild.outcome import (
    ERROR_CODE,
    ERROR_REASON,
    REMOVED_AT,
    Progress,
    Skipped,
    Status,
    failure,
)


class BdrRequest(msgspec.Struct, forbid_unknown_fields=True):
    post_ids: PostIds
    include_comments: bool = False
    include_reactions: bool = False
    send_email: bool = False
    target_sqid: Sqid | None = None
    include_layers: Annotated[
        bool,
        Meta(
            description="Each artwork's `.mkpx` layers file, when the post has one, goes in "
            "beside its image (`artworks/{post_sqid}.mkpx`)"
        ),
    ] = True
    repeat: Annotated[
        bool | None,
        Meta(
            description="`false`: refuse a repeat, 409 `bdr_repeated` (its `details` "
            "naming the download, `bdr_id` and `status`) when a download of exactly these "
            "posts, with the same comments, reactions and layers, is still pending, being "
            "built or ready: that one serves, and the day's limit is not spent. `true` or "
            "absent: a new download whatever the earlier ones (absent keeps every earlier "
            "client's behaviour)"
        ),
    ] = None


class _BdrFields(msgspec.Struct):
    """The columns an item shares with its row."""

    id: uuid.UUID
    status: Status
    artwork_count: int
    include_comments: bool
    include_reactions: bool
    send_email: bool
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime | None
    error_message: str | None
    file_size_bytes: int | None


class BdrItem(_BdrFields):
    error_code: Annotated[str | None, Meta(description=ERROR_CODE)]
    error_reason: Annotated[str | None, Meta(description=ERROR_REASON)]
    include_layers: bool
    removed_at: Annotated[datetime | None, Meta(description=REMOVED_AT)]
    requested_by_moderator: Annotated[
        bool,
        Meta(
            description="Asked for by a moderator on the user's behalf: it counts against the "
            "moderator's daily limit, and only a moderator may cancel or delete it"
        ),
    ]
    progress: Progress
    skipped: list[Skipped]
    download_url: Annotated[
        str | None,
        Meta(
            description="When ready: the ZIP's URL, carrying the owner as `target_sqid` so the "
            "owner and a moderator can both use it as given"
        ),
    ]


class DailyLimit(msgspec.Struct):
    """The caller's download requests today against the day's limits: a moderator's own, which
    span every artist, never the artist's."""

    limit: Annotated[int, Meta(description="Download requests a caller may make a UTC day")]
    used: Annotated[int, Meta(description="Those the caller made today, whatever their status")]
    limit_bytes: Annotated[int, Meta(description="The artworks' bytes a caller may ask a day")]
    used_bytes: Annotated[int, Meta(description="Those the caller's requests today asked for")]
    resets_at: Annotated[
        datetime, Meta(tz=True, description="The next UTC midnight, when both start over")
    ]


class BdrList(msgspec.Struct):
    items: list[BdrItem]
    daily_limit: Annotated[
        DailyLimit, Meta(description="So a client knows the day's limit before a refusal")
    ]


class ItemRow(_BdrFields):
    """An item's row (`ITEM_COLUMNS`) or event payload: the triggers are generated from it."""

    progress_done: int
    skipped: list[Skipped]
    user_sqid: str | None = None
    requested_by: int | None = None
    # Absent from events written before migration 0007.
    removed_at: datetime | None = None
    # Absent from events written before migration 0011, when every ZIP was without layers.
    include_layers: bool = False
    # Absent from events written before migration 0021.
    error_code: str | None = None


ITEM_COLUMNS = columns(ItemRow)


def bdr_item(row: Any) -> BdrItem:
    """An item from a row (mapping of column values) or an event payload (JSON-decoded)."""
    r = msgspec.convert(dict(row), ItemRow, strict=False)
    fields = msgspec.structs.asdict(r)
    for column in ("progress_done", "user_sqid", "requested_by"):  # shown otherwise, below
        del fields[column]
    url = f"/api/pmd/bdr/{r.id}/download"
    if r.user_sqid:  # the owner as `target_sqid`, so a moderator can use the URL as given
        url += f"?{urlencode({'target_sqid': r.user_sqid})}"
    return BdrItem(
        **fields | msgspec.structs.asdict(failure(r.status, r.error_code, r.error_message)),
        requested_by_moderator=r.requested_by is not None,
        progress=Progress(done=r.progress_done, total=r.artwork_count),
        download_url=url if r.status == "ready" else None,
    )
