"""Which of the host's posts and comments people see: the restore window of a deleted post and
the visibility of a comment, stated once for every part of the service that applies them.

The SQL fragments are constants, never built from input. The page states the restore window
once for the browser (`web/static/format.js`, RESTORE_WINDOW_DAYS); a test holds the two equal.
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


def visible_comment(alias: str) -> str:
    """SQL: the comment `alias` is shown to people (not hidden by a moderator, not deleted)."""
    return (
        f"NOT {alias}.hidden_by_mod AND NOT {alias}.deleted_by_owner AND NOT {alias}.deleted_by_mod"
    )
