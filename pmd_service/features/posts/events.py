"""The posts' event kind: `posts_changed`, written by the statement that changes the posts."""

from __future__ import annotations

from ...sse.kinds import Audience, EventKind
from .live import PostsChanged, posts_changed

POSTS_CHANGED = EventKind(
    kind="posts",
    event=b"posts_changed",
    data=PostsChanged,
    make=posts_changed,
    # Whoever made the change (another tab, a moderator), every page showing the posts reloads.
    audience=Audience.WATCHERS,
    summary="per bulk action or undo that changed the user's posts, whoever made it, and per "
    "addition of posts announced to the service (action `new`: load the list again)",
)

# The feature's event kinds, in the order an opening's snapshot sends them.
EVENTS: tuple[EventKind, ...] = (POSTS_CHANGED,)
