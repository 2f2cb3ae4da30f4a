"""What goes into a BDR ZIP: artworks re-checked at build time, and the JSON files.

Formats follow the seed (`metadata.json`, `comments.json`, `reactions.json`) plus `skipped` in
metadata.json and `parent_id` in each comment. JSON is UTF-8 without escaping, so titles and
emoji arrive byte-exact.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from ..public_ids import PublicIds

# Re-check eligibility now: posts deleted, moved to another owner or turned into playlists
# since the request are skipped (the seed exported them anyway).
SQL_POSTS_IN_ORDER = """
SELECT r.post_id, p.id IS NOT NULL AS found, p.public_sqid, p.owner_id, p.kind,
       p.deleted_by_user, p.title, p.description, p.created_at, p.width, p.height,
       p.frame_count, p.hashtags, p.storage_shard, p.storage_key, pf.format AS native_format
FROM unnest($1::int[]) WITH ORDINALITY AS r(post_id, ord)
LEFT JOIN posts p ON p.id = r.post_id
LEFT JOIN post_files pf ON pf.post_id = p.id AND pf.is_native
ORDER BY r.ord
"""
SQL_VISIBLE_COMMENTS = """
SELECT c.id, c.post_id, c.parent_id, c.body, c.created_at, u.handle AS author_handle
FROM comments c
LEFT JOIN users u ON u.id = c.author_id
WHERE c.post_id = ANY($1::int[])
  AND NOT c.hidden_by_mod AND NOT c.deleted_by_owner AND NOT c.deleted_by_mod
ORDER BY c.post_id, c.created_at, c.id
"""
SQL_REACTION_COUNTS = """
SELECT post_id, emoji, count(*) AS n
FROM reactions WHERE post_id = ANY($1::int[])
GROUP BY post_id, emoji
ORDER BY post_id, n DESC, emoji
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
    fmt: str

    @property
    def filename(self) -> str:
        return f"{self.sqid}.{self.fmt}"


@dataclass(frozen=True)
class Plan:
    artworks: list[Artwork]
    skipped: list[tuple[int, str]]  # (post id, reason) known before reading any file
    sqids: dict[int, str]


async def plan_artworks(
    conn: asyncpg.Pool, user_id: int, post_ids: list[int], ids: PublicIds
) -> Plan:
    artworks: list[Artwork] = []
    skipped: list[tuple[int, str]] = []
    sqids: dict[int, str] = {}
    for row in await conn.fetch(SQL_POSTS_IN_ORDER, post_ids):
        post_id = row["post_id"]
        sqids[post_id] = row["public_sqid"] or ids.encode(post_id)
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
                Artwork(
                    post_id=post_id,
                    sqid=sqids[post_id],
                    title=row["title"],
                    description=row["description"],
                    created_at=row["created_at"],
                    width=row["width"],
                    height=row["height"],
                    frame_count=row["frame_count"],
                    hashtags=list(row["hashtags"] or []),
                    storage_shard=row["storage_shard"],
                    storage_key=row["storage_key"],
                    fmt=row["native_format"],
                )
            )
    return Plan(artworks, skipped, sqids)


@dataclass(frozen=True)
class Extras:
    comments: list[asyncpg.Record] | None
    reactions: list[asyncpg.Record] | None


async def load_extras(
    conn: asyncpg.Pool, post_ids: list[int], comments: bool, reactions: bool
) -> Extras:
    return Extras(
        comments=await conn.fetch(SQL_VISIBLE_COMMENTS, post_ids) if comments else None,
        reactions=await conn.fetch(SQL_REACTION_COUNTS, post_ids) if reactions else None,
    )


def _json(value: Any) -> bytes:
    return msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"


def skipped_entries(skipped: list[tuple[int, str]], sqids: dict[int, str]) -> list[dict[str, Any]]:
    return [{"post_id": pid, "public_sqid": sqids.get(pid), "reason": why} for pid, why in skipped]


def json_files(
    handle: str,
    plan: Plan,
    extras: Extras,
    added: list[int],
    skipped: list[tuple[int, str]],
) -> list[tuple[str, bytes]]:
    """metadata.json (always), comments.json and reactions.json (when asked), for `added`."""
    now = datetime.now(UTC)
    included = set(added)
    by_id = {a.post_id: a for a in plan.artworks}
    files = [
        (
            "metadata.json",
            _json({
                "generated_at": now,
                "user_handle": handle,
                "artwork_count": len(added),
                "artworks": [
                    {
                        "sqid": a.sqid,
                        "filename": a.filename,
                        "title": a.title,
                        "description": a.description,
                        "created_at": a.created_at,
                        "width": a.width,
                        "height": a.height,
                        "frame_count": a.frame_count,
                        "file_format": a.fmt,
                        "hashtags": a.hashtags,
                    }
                    for a in (by_id[pid] for pid in added)
                ],
                "skipped": skipped_entries(skipped, plan.sqids),
            }),
        )
    ]  # fmt: skip
    if extras.comments is not None:
        comments: dict[str, list[dict[str, Any]]] = {}
        for c in extras.comments:
            if c["post_id"] in included:
                comments.setdefault(plan.sqids[c["post_id"]], []).append({
                    "id": str(c["id"]),
                    "author_handle": c["author_handle"] or "anonymous",
                    "body": c["body"],
                    "created_at": c["created_at"],
                    "parent_id": str(c["parent_id"]) if c["parent_id"] else None,
                })  # fmt: skip
        files.append(
            ("comments.json", _json({"generated_at": now, "comments_by_artwork": comments}))
        )
    if extras.reactions is not None:
        reactions: dict[str, dict[str, int]] = {}
        for r in extras.reactions:
            if r["post_id"] in included:
                reactions.setdefault(plan.sqids[r["post_id"]], {})[r["emoji"]] = r["n"]
        files.append(
            ("reactions.json", _json({"generated_at": now, "reactions_by_artwork": reactions}))
        )
    return files
