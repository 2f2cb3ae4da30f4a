"""BDR request and item shapes (API, SSE and OpenAPI share them)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec

from ..posts.schemas import PostIds, Sqid

Status = Literal["pending", "processing", "ready", "failed", "expired", "cancelled"]
SkipReason = Literal["deleted", "not_owner", "playlist", "file_missing", "fetch_failed"]
ACTIVE: frozenset[str] = frozenset({"pending", "processing"})


class BdrRequest(msgspec.Struct, forbid_unknown_fields=True):
    post_ids: PostIds
    include_comments: bool = False
    include_reactions: bool = False
    send_email: bool = False
    target_sqid: Sqid | None = None


class Progress(msgspec.Struct):
    done: int
    total: int


class Skipped(msgspec.Struct):
    post_id: int
    public_sqid: str | None
    reason: SkipReason


class BdrItem(msgspec.Struct):
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
    progress: Progress
    skipped: list[Skipped]
    download_url: str | None


class BdrList(msgspec.Struct):
    items: list[BdrItem]


class _Row(msgspec.Struct):
    """The columns an item is made of: from an asyncpg row or an event's jsonb payload."""

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
    progress_done: int
    skipped: list[Skipped]


ITEM_COLUMNS = """
    id, status, artwork_count, include_comments, include_reactions, send_email, created_at,
    started_at, completed_at, expires_at, error_message, file_size_bytes, progress_done, skipped
"""


def bdr_item(row: Any) -> BdrItem:
    """An item from a row (mapping of column values) or an event payload (JSON-decoded)."""
    r = msgspec.convert(dict(row), _Row, strict=False)
    return BdrItem(
        id=r.id,
        status=r.status,
        artwork_count=r.artwork_count,
        include_comments=r.include_comments,
        include_reactions=r.include_reactions,
        send_email=r.send_email,
        created_at=r.created_at,
        started_at=r.started_at,
        completed_at=r.completed_at,
        expires_at=r.expires_at,
        error_message=r.error_message,
        file_size_bytes=r.file_size_bytes,
        progress=Progress(done=r.progress_done, total=r.artwork_count),
        skipped=r.skipped,
        download_url=f"/api/pmd/bdr/{r.id}/download" if r.status == "ready" else None,
    )
