"""The posts and their bulk actions, as the house builds them: one manifest."""

from __future__ import annotations

from ..manifest import Feature
from .endpoints import ENDPOINTS, host_cache_ctx
from .events import EVENTS

FEATURE = Feature(
    name="posts",
    endpoints=ENDPOINTS,
    lifetimes=(host_cache_ctx,),
    events=(EVENTS,),
)
