"""Posts that change live: a bulk action's or an undo's change of posts is an event of the stream
(`posts_changed`), written by the statement that makes the change
(migrations/0015_posts_changed_events.sql), so it is ordered, resumed and replayed with the
stream's other events."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

# The most post ids an event names: a 10,000-post action by filter is one small event saying
# how many changed, and the page then fetches its rows again.
MOST_IDS = 500

EVENT = b"posts_changed"


def announce(owner: str, action: str, ids: str, action_id: str) -> str:
    """SQL (an expression): the `posts_changed` event of the posts `ids` (int[]) of user `owner`
    that the bulk action `action_id` changed; evaluate it only when `ids` is not empty."""
    return f"pmd_posts_changed({owner}, {action}, {ids}, {action_id}, {MOST_IDS})"


class PostsChanged(msgspec.Struct, kw_only=True):
    """The data of a `posts_changed` event: posts of the stream's user changed (an action of the
    user's, from any tab or device, or of a moderator's, or an undo)."""

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
            description="What changed them: hide, unhide, delete, restore, license, tags, "
            "remixable, or undo"
        ),
    ]


def is_posts_payload(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("kind") == "posts"


def posts_changed(payload: Any) -> PostsChanged:
    """An event's data from its payload in the events table."""
    return msgspec.convert(
        {key: payload.get(key) for key in PostsChanged.__struct_fields__}, PostsChanged
    )
