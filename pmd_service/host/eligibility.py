"""Which posts a user may act on, for batch actions and download requests (never playlists)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

from msgspec import Meta

from ..core.codes import Code
from ..core.problems import FieldError, ProblemError, bad_request, validation_error
from ..core.visibility import RESTORE_WINDOW_DAYS

if TYPE_CHECKING:
    from ..core.db import Conn

MAX_BATCH = 128  # posts per batch action or download request
PostId = Annotated[int, Meta(ge=1, le=2_147_483_647, description="A post id")]
PostIds = Annotated[
    list[PostId],
    Meta(min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} distinct post ids"),
]
Sqid = Annotated[str, Meta(max_length=16)]

# Eligibility with row locks, for callers that act on the posts later in their own transaction
# (BDR requests). Ordered by id so overlapping batches lock in the same order (no deadlock).
SQL_LOCK_LIVE = """
SELECT id FROM posts
WHERE id = ANY($2::int[]) AND owner_id = $1 AND kind = 'artwork' AND NOT deleted_by_user
ORDER BY id FOR UPDATE
"""


def ensure_unique(post_ids: list[int]) -> None:
    if dupes := sorted(i for i, n in Counter(post_ids).items() if n > 1):
        listed = list_ids(dupes)
        raise validation_error(
            f"`post_ids` must be 1 to {MAX_BATCH} distinct ids; repeated: {listed}. "
            "Send each id once.",
            [FieldError(field="post_ids", message=f"repeated ids: {listed}")],
        )


def list_ids(ids: list[int], shown: int = 20) -> str:
    listed = ", ".join(map(str, ids[:shown]))
    return f"{listed} and {len(ids) - shown} more" if len(ids) > shown else listed


def ineligible(missing: list[int], restorable: bool) -> Exception:
    one = len(missing) == 1
    if restorable:
        why = (
            "is not a deleted artwork of this user that can still be restored"
            if one
            else "are not deleted artworks of this user that can still be restored"
        ) + f" (deleted posts can be restored for {RESTORE_WINDOW_DAYS} days)"
    else:
        why = (
            "is not one of this user's artworks, or is deleted"
            if one
            else "are not this user's artworks, or are deleted"
        )
    return posts_refused(
        missing,
        why,
        f"Remove {'it' if one else 'them'} and try again.",
        "ineligible",
        code=Code.POSTS_NOT_RESTORABLE if restorable else Code.POSTS_NOT_OWNED,
        extra={"invalid_post_ids": missing},
        details={"missing_ids": missing},
    )


def posts_refused(
    ids: list[int], why: str, then: str, label: str, *, code: Code, **kw: Any
) -> ProblemError:
    """The 400 naming the posts (`ids`) a batch is refused for, whole."""
    listed = list_ids(ids)
    return bad_request(
        f"{'Post' if len(ids) == 1 else 'Posts'} {listed} {why}; nothing was changed. {then}",
        slug="ineligible-posts",
        errors=[FieldError(field="post_ids", message=f"{label}: {listed}")],
        code=code,
        **kw,
    )


async def lock_eligible(conn: Conn, owner_id: int, post_ids: list[int]) -> None:
    """Lock the posts or raise 400 naming every id that is not the owner's live artwork."""
    found = {r["id"] for r in await conn.fetch(SQL_LOCK_LIVE, owner_id, post_ids)}
    if missing := sorted(set(post_ids) - found):
        raise ineligible(missing, restorable=False)
