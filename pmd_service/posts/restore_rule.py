"""The host's restore rule (its undelete plan, "Hash re-uploaded during window"): a deleted post
whose artwork another live post now holds (`uq_posts_hash_active`) is not restored, and the
refusal names each such post and the post that holds its artwork. For restores and for the undo
of a delete alike."""

from __future__ import annotations

import msgspec

from ..core.problems import FieldError, ProblemError

# The host's one live post per artwork: a restore that would break it raced an upload.
HASH_INDEX = "uq_posts_hash_active"


class HeldBy(msgspec.Struct):
    post_id: int
    public_sqid: str | None
    live: bool


class Clash(msgspec.Struct):
    post_id: int
    public_sqid: str | None
    held_by: HeldBy


def artwork_held(rows: object) -> ProblemError:
    """409 naming each deleted post whose artwork another post holds (or would hold), from a
    statement's `clashes` column (a JSON list of Clash)."""
    clashes = msgspec.convert(rows or [], list[Clash])
    parts = []
    for c in clashes:
        if c.held_by.live:
            parts.append(
                f"post {c.post_id} was uploaded again as post {c.held_by.post_id} "
                f"({c.held_by.public_sqid})"
            )
        else:
            parts.append(f"post {c.post_id} is the same artwork as post {c.held_by.post_id}")
    live = any(c.held_by.live for c in clashes)
    twins = not all(c.held_by.live for c in clashes)
    fix = []
    if live:
        fix.append("a post whose artwork lives on as a newer post cannot be restored")
    if twins:
        fix.append("of posts of the same artwork only one can be restored: send one of them")
    return ProblemError(
        409,
        "artwork-reuploaded",
        "Conflict",
        f"Nothing was restored: {'; '.join(parts)}. The site keeps one live post per artwork: "
        f"{'; '.join(fix)}. Leave {'it' if len(clashes) == 1 else 'them'} out and try again.",
        errors=[
            FieldError(field="post_ids", message=f"artwork held by another post: {c.post_id}")
            for c in clashes
        ],
        extra={
            "invalid_post_ids": [c.post_id for c in clashes],
            "conflicts": msgspec.to_builtins(clashes),
        },
    )
