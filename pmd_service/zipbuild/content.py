"""What goes into a ZIP (a BDR's, an export part's): artworks re-checked at build time, and the
JSON files (docs/architecture.md, "ZIP layout"), UTF-8 without escaping."""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

import asyncpg
import msgspec

from ..core.db import from_row
from ..core.public_ids import PublicIds
from ..host.mentions import Mentions
from .build import Trailing
from .entry_names import extension, post_sqid, safe_part
from .json_files import Extras
from .mention_refs import MentionSlots
from .outcome import Kind
from .working_files import NONE, Outcome, Wanted, WorkingFile

# An incremental export's post whose metadata alone changed: listed, without its files.
METADATA_ONLY = "metadata"

# Eligibility re-checked now: posts that changed since the request are skipped.
SQL_POSTS_IN_ORDER = """
SELECT r.post_id, p.id IS NOT NULL AS found, p.public_sqid, p.owner_id, p.kind,
       p.deleted_by_user, p.title, p.description, p.created_at, p.width, p.height,
       p.frame_count, p.hashtags, p.storage_shard, p.storage_key, pf.format AS native_format,
       p.hidden_by_user, p.hidden_by_mod, l.identifier AS license, p.mkpx_file_bytes
FROM unnest($1::int[]) WITH ORDINALITY AS r(post_id, ord)
LEFT JOIN posts p ON p.id = r.post_id
LEFT JOIN post_files pf ON pf.post_id = p.id AND pf.is_native
LEFT JOIN licenses l ON l.id = p.license_id
ORDER BY r.ord
"""


@dataclass(frozen=True)
class Artwork:
    post_id: int
    sqid: str
    title: str
    description: str | None
    created_at: datetime
    width: int | None
    height: int | None
    frame_count: int
    hashtags: list[str]
    storage_shard: str | None
    storage_key: uuid.UUID
    fmt: str  # as the host stores it: finds the file (vault.py refuses any unknown format)
    hidden_by_user: bool = False
    hidden_by_mod: bool = False
    license: str | None = None
    palette: str | None = None  # where its palette goes (`.hex`, `.gpl`), when one is asked for
    working: tuple[WorkingFile, ...] = ()  # its working files to add after its image
    folder: str = "artworks"  # where its image goes (an archive part: a folder a post)

    @property
    def ext(self) -> str:
        return extension(self.fmt)

    @property
    def filename(self) -> str:
        """The entry's name under `artworks/`, its sqid checked again for Artworks built elsewhere."""
        sqid = self.sqid if safe_part(self.sqid) else str(self.post_id)
        return f"{sqid}.{self.ext}"


@dataclass(frozen=True)
class Plan:
    artworks: list[Artwork]
    skipped: list[tuple[int, str]]  # (post id, reason) known before reading any file
    sqids: dict[int, str]

    def working_arcnames(self) -> dict[tuple[int, Kind], str]:
        names = {(a.post_id, w.kind): w.arcname for a in self.artworks for w in a.working}
        return names | {(a.post_id, "palette"): a.palette for a in self.artworks if a.palette}

    def artworks_done(self) -> Callable[[int], int]:
        """The builder's entries done -> artworks done (working files are entries of their own)."""
        ends = list(accumulate(1 + len(a.working) for a in self.artworks))
        return lambda entries: bisect.bisect_right(ends, entries)


async def plan_artworks(
    conn: asyncpg.Pool, user_id: int, post_ids: list[int], ids: PublicIds, wanted: Wanted = NONE
) -> Plan:
    artworks: list[Artwork] = []
    skipped: list[tuple[int, str]] = []
    sqids: dict[int, str] = {}
    for row in await conn.fetch(SQL_POSTS_IN_ORDER, post_ids):
        post_id = row["post_id"]
        # Names in the ZIP and its JSON files are built from this: never the host's value as is.
        sqids[post_id] = post_sqid(row["public_sqid"], post_id, ids)
        if not row["found"] or row["deleted_by_user"]:
            skipped.append((post_id, "deleted"))
        elif row["owner_id"] != user_id:
            skipped.append((post_id, "not_owner"))
        elif row["kind"] != "artwork":
            skipped.append((post_id, "playlist"))
        elif row["native_format"] is None:
            skipped.append((post_id, "file_missing"))
        else:
            artworks.append(
                from_row(
                    Artwork,
                    row,
                    sqid=sqids[post_id],
                    hashtags=list(row["hashtags"] or []),
                    fmt=row["native_format"],
                    working=wanted.for_post(sqids[post_id], row["mkpx_file_bytes"] is not None),
                    palette=wanted.palette_for(sqids[post_id]),
                    folder="artworks",
                )
            )
    return Plan(artworks, skipped, sqids)


def pretty_json(value: Any) -> bytes:
    """msgspec's indent=2 pretty-printing, plus a newline."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"


def skipped_entries(skipped: list[tuple[int, str]], sqids: dict[int, str]) -> list[dict[str, Any]]:
    return [{"post_id": pid, "public_sqid": sqids.get(pid), "reason": why} for pid, why in skipped]


def skipped_file_entries(working: Outcome | None, sqids: dict[int, str]) -> list[dict[str, Any]]:
    """The working files the host declares but that could not be read (`skipped_files`)."""
    return [
        {"post_id": pid, "public_sqid": sqids.get(pid), "file": kind, "reason": why}
        for pid, kind, why in (working.skipped if working else [])
    ]


def _entry(
    a: Artwork,
    full: bool,
    working: dict[str, str],
    mentions: MentionSlots,
    change: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "sqid": a.sqid,
        "filename": a.filename,
        "title": a.title,
        # Plain, with the stored markup and the accounts it mentions beside it, as the host's.
        **mentions.fields(a.description, "description"),
        "created_at": a.created_at,
        "width": a.width,
        "height": a.height,
        "frame_count": a.frame_count,
        "file_format": a.ext,
        "hashtags": a.hashtags,
        "license": a.license,  # its identifier (CC-BY-4.0…), null when the post has none
        # Every file of the post in this ZIP, by role, relative to where metadata.json is.
        "files": {"artwork": f"artworks/{a.filename}", **working},
    }
    if full:  # an export holds hidden posts too: say which
        entry |= {"hidden_by_user": a.hidden_by_user, "hidden_by_mod": a.hidden_by_mod}
    if change is not None:
        entry["change"] = change
        if change == METADATA_ONLY:  # its files are in the export this one follows
            entry["files"] = {}
    return entry


def json_files(
    handle: str,
    plan: Plan,
    extras: Extras,
    added: list[int],
    skipped: list[tuple[int, str]],
    mentions: Mentions,
    export: dict[str, Any] | None = None,
    working: Outcome | None = None,
    changes: Mapping[int, str] | None = None,
) -> list[tuple[str, Trailing]]:
    """metadata.json (always), comments.json and reactions.json (when asked), for `added`;
    `export` is what an export's part adds at the top, `changes` an incremental export's."""
    now = datetime.now(UTC)
    by_id = {a.post_id: a for a in plan.artworks}
    slots = MentionSlots(mentions, b"  " * 3)  # an artwork's keys
    document: dict[str, Any] = {
        "generated_at": now,
        "user_handle": handle,
        **(export or {}),
        "artwork_count": len(added),
        "artworks": [
            _entry(
                by_id[pid],
                export is not None,
                working.added.get(pid, {}) if working else {},
                slots,
                None if changes is None else changes.get(pid),
            )
            for pid in added
        ],
        "skipped": skipped_entries(skipped, plan.sqids),
        "skipped_files": skipped_file_entries(working, plan.sqids),
    }
    files: list[tuple[str, Trailing]] = [("metadata.json", slots.fill(pretty_json(document)))]
    return [*files, *extras.files(now, added, plan.sqids, mentions)]
