"""Which of the host's posts and comments people see: the restore window of a deleted post, the
host's restore rule (an artwork uploaded again cannot be restored) and the visibility of a
comment, stated once for every part of the service that applies them.

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


def hash_taken(alias: str) -> str:
    """SQL: another live post holds the artwork hash of the post `alias`, so restoring `alias`
    would break the host's `uq_posts_hash_active` (the host frees a hash when its post is
    deleted, and its own restore plan refuses such a restore)."""
    return f"EXISTS (SELECT 1 FROM posts {alias}_h WHERE {holds_hash(alias, f'{alias}_h')})"


def hash_holder(alias: str) -> str:
    """SQL: the id of the live post holding the artwork hash of the post `alias` (NULL when
    none; the host's unique index allows one at most)."""
    holder = f"{alias}_h"
    return f"(SELECT {holder}.id FROM posts {holder} WHERE {holds_hash(alias, holder)} LIMIT 1)"


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
