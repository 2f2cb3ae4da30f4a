"""Posts that change live: `posts_changed` events, written with the change."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta

from ...core.named_sql import Named
from .actions import ACTIONS

if TYPE_CHECKING:
    from ...core.db import Conn

# The most post ids an event names: past it, the page fetches its rows again.
MOST_IDS = 500

# The action of posts that were added: the pages showing the owner's list load it again.
NEW = "new"


def announce(owner: str, action: str, ids: str, action_id: str) -> str:
    """SQL: the `posts_changed` event of the posts `ids` (int[], not empty) of user `owner`."""
    return f"pmd_posts_changed({owner}, {action}, {ids}, {action_id}, {MOST_IDS})"


# Several changes' events in their order, written at once (one insert, one doorbell): change n
# is `:owners[n]`'s action `:actions[n]` (its id `:action_ids[n]`) on `:ids[:firsts[n]:lasts[n]]`.
SQL_ANNOUNCE_EACH = Named(
    "SELECT pmd_posts_changed_each(:owners::int[], :actions::text[], :ids::int[], "
    f":firsts::int[], :lasts::int[], :action_ids::uuid[], {MOST_IDS})"
)
# Added posts belong to no bulk action: the event's action id is one of their own.
SQL_ANNOUNCE_NEW = Named(
    f"SELECT {announce(':owner::int', ':action::text', ':ids::int[]', 'gen_random_uuid()')}"
)
# A database with the host's tables but not yet the service's has no stream to tell.
SQL_CAN_ANNOUNCE = (
    "SELECT to_regprocedure('pmd_posts_changed(integer, text, integer[], uuid, integer)') "
    "IS NOT NULL"
)


async def announce_new(conn: Conn, owner_id: int, post_ids: list[int]) -> bool:
    """Writes the `posts_changed` of posts just added, in the caller's transaction."""
    if not post_ids or not await conn.fetchval(SQL_CAN_ANNOUNCE):
        return False
    await conn.fetchval(*SQL_ANNOUNCE_NEW.bind({"owner": owner_id, "action": NEW, "ids": post_ids}))
    return True


class PostsChanged(msgspec.Struct, kw_only=True):
    """The data of a `posts_changed` event: posts of the stream's user changed (an action of the
    user's, from any tab or device, or of a moderator's, or an undo) or were added."""

    post_ids: (
        Annotated[
            list[int],
            Meta(
                description=f"The posts that changed, when {MOST_IDS} or fewer did; null: "
                "fetch the list again"
            ),
        ]
        | None
    )
    changed_count: Annotated[int, Meta(ge=1, description="How many posts changed")]
    action: Annotated[
        str,
        Meta(
            description="What changed them: "
            + ", ".join(action.name for action in ACTIONS)
            + ", or undo; `new`: the posts were added (the list gains them)"
        ),
    ]


def posts_changed(payload: Any) -> PostsChanged:
    """An event's data from its payload in the events table."""
    return msgspec.convert(
        {key: payload.get(key) for key in PostsChanged.__struct_fields__}, PostsChanged
    )
