"""Which of the host's posts and comments people see, as SQL fragments never built from input
(`web/static/format.js` repeats RESTORE_WINDOW_DAYS; a test holds the two equal).
"""

from __future__ import annotations

# A post deleted by its owner can be restored (and is listed under "Recently deleted") this long.
RESTORE_WINDOW_DAYS = 7


def restorable(alias: str) -> str:
    """SQL: the post `alias` was deleted recently enough to be restored."""
    return (
        f"{alias}.deleted_by_user"
        f" AND {alias}.deleted_by_user_date > now() - interval '{RESTORE_WINDOW_DAYS} days'"
    )


def holds_hash(alias: str, holder: str) -> str:
    """SQL: the post `holder` is the live post holding the artwork hash of the post `alias`."""
    # The predicate of the host's uq_posts_hash_active, so the lookup is that index's.
    return (
        f"{holder}.hash = {alias}.hash AND {holder}.deleted_by_user = false"
        f" AND {holder}.id <> {alias}.id"
    )


def visible_comment(alias: str) -> str:
    """SQL: the comment `alias` is shown to people (not hidden by a moderator, not deleted)."""
    return (
        f"NOT {alias}.hidden_by_mod AND NOT {alias}.deleted_by_owner AND NOT {alias}.deleted_by_mod"
    )
