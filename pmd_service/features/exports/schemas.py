"""Export request and item shapes (API, SSE and OpenAPI share them)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ...core.payload_sql import Sql, build_object, columns
from ...host.eligibility import Sqid
from ...zipbuild.outcome import (
    ERROR_CODE,
    ERROR_REASON,
    REMOVED_AT,
    Progress,
    Skipped,
    Status,
    failure,
)
from .plan import POSTS_A_PART

PartStatus = Literal["pending", "processing", "ready", "expired", "cancelled", "failed"]
# How a part is laid out: a BagIt bag, or the account archive other sites import.
Layout = Literal["bagit", "activitypub"]
BAGIT: Layout = "bagit"
ACTIVITYPUB: Layout = "activitypub"
LAYOUTS: tuple[Layout, ...] = (BAGIT, ACTIVITYPUB)


class ExportRequest(msgspec.Struct, forbid_unknown_fields=True):
    include_comments: bool = True
    include_reactions: bool = True
    send_email: bool = False
    part_bytes: Annotated[
        int | None,
        Meta(
            description="The largest a part may be, in bytes (default EXPORT_PART_BYTES, 2 GiB; "
            "within EXPORT_MIN_PART_BYTES and EXPORT_MAX_PART_BYTES). An artwork larger than "
            f"this goes alone into a part of its own; a part holds at most {POSTS_A_PART:,} artworks"
        ),
    ] = None
    # Accepted so that a page sending it for every call gets a clear 403 for someone else.
    target_sqid: Sqid | None = None
    include_upscaled: Annotated[
        bool,
        Meta(
            description="Each artwork's upscaled copy, where the host made one, goes in too "
            "(`data/upscaled/{post_sqid}.webp`). Layers files (`.mkpx`) are always in"
        ),
    ] = False
    since: Annotated[
        str | None,
        Meta(
            description="An incremental export: the id of an earlier export of yours that "
            "reached `ready` (its files may have expired since), or `last` for the newest "
            "such one you asked for; one cancelled, failed or still running is a 400 naming "
            "the one you can follow (`followable_export_id`). Only the posts created or "
            "changed since it started go in (metadata, artwork, a layers file attached), plus "
            "`data/removed.json` naming its posts that are gone; a post carries its files only "
            "when it is new or its artwork or layers file changed (a change of metadata alone "
            "is in `metadata.json`, its `change` `metadata`). Its own cooldown "
            "(EXPORT_INCREMENTAL_COOLDOWN_SECONDS); nothing changed is a 200, no export"
        ),
    ] = None
    repeat_every_days: Annotated[
        int | None,
        Meta(
            description="A recurring export: this one (full) now, then one every this many "
            "days (within EXPORT_REPEAT_MIN_DAYS and EXPORT_REPEAT_MAX_DAYS), each "
            "incremental against the one before, started by the worker. With `repeat_times`"
        ),
    ] = None
    repeat_times: Annotated[
        int | None,
        Meta(
            description="How many exports the schedule makes, this one included (2 to "
            "EXPORT_REPEAT_MAX_TIMES). With `repeat_every_days`"
        ),
    ] = None
    # A string, so that a bad one is a 400 naming the layouts (service.py), not a 422.
    layout: Annotated[
        str | None,
        Meta(
            description="How each part is laid out: `bagit` (the default), a BagIt bag with an "
            "offline gallery, or `activitypub`, an account archive in the layout Mastodon's "
            "backup writes (`outbox.json`, `actor.json`, `media_attachments/`), which other "
            "sites import. Left out with `since`: the layout of the export it follows; a "
            "recurring export keeps the layout of the one before"
        ),
    ] = None


class PartRow(msgspec.Struct):
    """A part as a payload carries it (each field a column of `export_parts`, alias `p`)."""

    number: int
    status: PartStatus
    artwork_count: int
    file_size_bytes: int | None
    sha256: Annotated[str | None, Meta(description="The part's SHA-256 (hex), once ready")]


class ExportPart(PartRow):
    download_url: Annotated[str | None, Meta(description="When ready: the part's URL")]


def _length(column: str) -> str:
    """The length of a jsonb list column (0 for anything else)."""
    array = f"r.{column}"
    return f"CASE jsonb_typeof({array}) WHEN 'array' THEN jsonb_array_length({array}) ELSE 0 END"


class ExportFields(msgspec.Struct):
    """What the payload, an item and an event carry alike: each field the export's column of
    the same name unless its `Sql` says otherwise (naming the row `r`)."""

    id: uuid.UUID
    status: Status
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime | None
    removed_at: Annotated[datetime | None, Meta(description=REMOVED_AT)]
    part_bytes: int
    include_comments: bool
    include_reactions: bool
    send_email: bool
    include_upscaled: bool
    layout: Annotated[Layout, Meta(description="How each part is laid out (see the request)")]
    follows_export_id: Annotated[
        uuid.UUID | None,
        Meta(description="An incremental export: the export it follows (null: a full one)"),
        Sql("r.follows_id"),
    ]
    changed_since: Annotated[
        datetime | None,
        Meta(description="An incremental export: when the export it follows started"),
        Sql("r.follows_started_at"),
    ]
    removed_count: Annotated[
        int,
        Meta(description="Posts of the followed export that are gone (data/removed.json)"),
        Sql(_length("removed")),
    ]
    artwork_count: Annotated[int, Meta(description="Artworks planned into parts (0 until planned)")]
    total_bytes: Annotated[int, Meta(description="Bytes of the parts built so far")]
    error_message: str | None
    error_code: Annotated[str | None, Meta(description=ERROR_CODE)]


class _ExportFields(ExportFields):
    """What an item and an event carry alike (`_shared` below fills them)."""

    error_reason: Annotated[str | None, Meta(description=ERROR_REASON)]
    progress: Progress
    sha256sums_url: Annotated[
        str, Meta(description="Every ready part's SHA-256 and file name, in `sha256sum` format")
    ]
    parts_count: Annotated[int, Meta(description="How many parts the export has")]


class ExportItem(_ExportFields):
    skipped: list[Skipped]
    skipped_count: Annotated[
        int, Meta(description="How many entries `skipped` lists (an artwork, or its palette)")
    ]
    parts: list[ExportPart]
    # Read with the item, not carried by events (a page keeps the item's).
    added_count: Annotated[
        int | None,
        Meta(
            description="An incremental export: of `artwork_count`, the posts new since the "
            "export it follows (null for a full export, and until its parts are planned)"
        ),
    ]
    changed_count: Annotated[
        int | None,
        Meta(
            description="An incremental export: of `artwork_count`, the posts changed since "
            "the export it follows (null as `added_count`)"
        ),
    ]


# An event names at most this many parts (`_event_parts`: the same rule for older events).
EVENT_PARTS = 12


class ExportUpdate(_ExportFields):
    """The data of an `export_update` event: the item without its lists that grow with the
    export, so every event stays a few KB. `skipped_count` and `parts_count` say what the item
    holds; `parts` names at most 12 of them (all of an export of up to 12 parts): those being
    built, then the ready ones newest first. A reader merges them by `number` and asks for the
    item (`GET /api/pmd/exports/{id}`) when it needs the rest."""

    skipped_count: Annotated[
        int,
        Meta(description="Artworks (or their palettes) left out so far (the list: GET the export)"),
    ]
    parts: Annotated[
        list[ExportPart],
        Meta(description="At most 12 parts: those being built, then the newest ready ones"),
    ]


class NothingChanged(msgspec.Struct):
    """The answer to an incremental export with nothing to hold: no export is made."""

    nothing_changed: Literal[True]
    message: str
    since_export_id: uuid.UUID
    changed_since: datetime


class ExportSchedule(msgspec.Struct):
    """A recurring export's schedule (cancel: DELETE /api/pmd/exports/schedule)."""

    every_days: int
    remaining: Annotated[int, Meta(description="Exports still to start")]
    next_at: Annotated[datetime, Meta(description="When the worker starts the next one")]
    last_export_id: uuid.UUID | None
    send_email: bool
    cancelled_at: Annotated[
        datetime | None,
        Meta(description="When the service cancelled it (null while it runs)"),
    ] = None
    cancel_reason: Annotated[
        str | None,
        Meta(
            description="Why the service cancelled it (the account was deactivated or banned); "
            "no further export is made or emailed. Null while it runs"
        ),
    ] = None


class ExportLimits(msgspec.Struct):
    """What a request may ask for, so a page offers only part sizes the server accepts."""

    min_part_bytes: int
    max_part_bytes: int
    default_part_bytes: int
    cooldown_seconds: int
    incremental_cooldown_seconds: int
    repeat_min_days: int
    repeat_max_days: int
    repeat_max_times: int


class ExportList(msgspec.Struct):
    items: list[ExportItem]
    limits: ExportLimits
    schedule: Annotated[
        ExportSchedule | None,
        Meta(
            description="The recurring export's schedule, while it has exports to start, or "
            "one the service cancelled (`cancel_reason` says why) until a new one is asked for"
        ),
    ]
    next_export_at: Annotated[
        datetime | None,
        Meta(
            description="When the cooldown of the last full export that counts ends (any but "
            "a failed one or one cancelled before any part was ready; null: a new full export "
            "may be requested now, unless one is running)"
        ),
    ]
    next_incremental_export_at: Annotated[
        datetime | None,
        Meta(
            description="When an incremental export (`since`) may be requested: "
            "EXPORT_INCREMENTAL_COOLDOWN_SECONDS after the last export of any kind that counts"
        ),
    ]


# The parts of an export, in number order; an event's, at most EVENT_PARTS (see ExportUpdate).
_AGGREGATED = f"""coalesce((
            SELECT jsonb_agg({build_object(PartRow, alias="p", indent=" " * 16)}
                ORDER BY p.number)
            FROM """
_PARTS = f"{_AGGREGATED}export_parts p WHERE p.export_id = r.id), '[]'::jsonb)"
_EVENT_PARTS = f"""{_AGGREGATED}(
                SELECT {columns(PartRow)} FROM export_parts p WHERE p.export_id = r.id
                ORDER BY p.status = 'processing' DESC, p.status = 'ready' DESC,
                         CASE WHEN p.status = 'ready' THEN -p.number ELSE p.number END
                LIMIT {EVENT_PARTS}
            ) AS p), '[]'::jsonb)"""


class Payload(ExportFields):
    """The one definition of `export_payload(row)` and `export_event_payload(row)`."""

    progress_done: int
    # The parts change in export_parts, and `parts_version` with them (same transaction).
    parts: Annotated[list[PartRow], Sql(_PARTS, event=_EVENT_PARTS, watch=("parts_version",))]
    # An event carries counts instead of the lists that grow; events before 0008 carry none.
    skipped: Annotated[list[Skipped], Sql("r.skipped", event="'[]'::jsonb")] = []
    skipped_count: Annotated[int | None, Sql(_length("skipped"))] = None
    parts_count: Annotated[
        int | None,
        Sql(
            "(SELECT count(*) FROM export_parts p WHERE p.export_id = r.id)",
            watch=("parts_version",),
        ),
    ] = None
    kind: Annotated[Literal["export"], Sql("'export'")] = "export"
    user_sqid: str | None = None


# The keys of ExportFields an event written before migration 0012 may lack.
_OLD_EVENT_DEFAULTS: dict[str, Any] = {
    "removed_at": None,
    "include_upscaled": False,
    "follows_export_id": None,
    "changed_since": None,
    "removed_count": 0,
    "error_code": None,  # migration 0019
    "layout": BAGIT,  # migration 0035
}


def export_base_url(export_id: uuid.UUID) -> str:
    return f"/api/pmd/exports/{export_id}"


def part_filename(export_id: uuid.UUID, number: int, count: int, layout: str) -> str:
    kind = "archive" if layout == ACTIVITYPUB else "export"
    return f"makapix-{kind}-{str(export_id)[:8]}-part-{number}-of-{count}.zip"


def _decoded(payload: Any) -> Payload:
    try:
        if isinstance(payload, str | bytes):
            return msgspec.json.decode(payload, type=Payload)
        return msgspec.convert(payload, Payload, strict=False)
    except msgspec.ValidationError:
        old = msgspec.json.decode(payload) if isinstance(payload, str | bytes) else payload
        return msgspec.convert(_OLD_EVENT_DEFAULTS | old, Payload, strict=False)


def _parts(p: Payload, parts: list[PartRow]) -> list[ExportPart]:
    servable = p.status in ("pending", "processing", "ready", "failed")
    return [
        ExportPart(
            **msgspec.structs.asdict(part),
            download_url=(
                f"{export_base_url(p.id)}/parts/{part.number}/download"
                if servable and part.status == "ready"
                else None
            ),
        )
        for part in parts
    ]


def _event_parts(parts: list[PartRow]) -> list[PartRow]:
    """The parts an event names, by 0008's rule (a payload written by 0008 is within it)."""
    if len(parts) <= EVENT_PARTS:
        return parts

    def interest(part: PartRow) -> tuple[bool, bool, int]:
        ready = part.status == "ready"
        return (part.status != "processing", not ready, -part.number if ready else part.number)

    return sorted(sorted(parts, key=interest)[:EVENT_PARTS], key=lambda part: part.number)


def _shared(p: Payload) -> dict[str, Any]:
    """The fields an item and an event carry alike."""
    shown = failure(p.status, p.error_code, p.error_message)
    return {name: getattr(p, name) for name in ExportFields.__struct_fields__} | {
        **msgspec.structs.asdict(shown),
        "progress": Progress(done=p.progress_done, total=p.artwork_count),
        "sha256sums_url": f"{export_base_url(p.id)}/SHA256SUMS",
    }


def export_item(payload: Any, added: int | None = None) -> ExportItem:
    """An item from `export_payload(row)` (text, bytes or mapping); `added`: posts new to it."""
    p = _decoded(payload)
    return ExportItem(
        **_shared(p),
        skipped=p.skipped,
        skipped_count=len(p.skipped),
        parts=_parts(p, p.parts),
        parts_count=len(p.parts),
        added_count=added,
        changed_count=None if added is None else p.artwork_count - added,
    )


def export_update(payload: Any) -> ExportUpdate:
    """An event's data from `export_event_payload(row)` (before 0008, `export_payload(row)`)."""
    p = _decoded(payload)
    return ExportUpdate(
        **_shared(p),
        skipped_count=len(p.skipped) if p.skipped_count is None else p.skipped_count,
        parts=_parts(p, _event_parts(p.parts)),
        parts_count=len(p.parts) if p.parts_count is None else p.parts_count,
    )
