"""The stream's event kinds: the one list of them, each declared by the feature it belongs to
(sse/kinds.py says what a declaration holds). The stream frames, routes, replays and snapshots
by it, and the OpenAPI document lists its events from it.

`python -m pmd_service.web.event_kinds [--check]` writes (or checks) the SQL the kinds
generate into migrations/repeatable/ (sse/shapes.py).
"""

from __future__ import annotations

import sys

from ..bdr.events import EVENTS as BDR_EVENTS
from ..exports.events import EVENTS as EXPORT_EVENTS
from ..posts.events import EVENTS as POSTS_EVENTS
from ..sse import shapes
from ..sse.kinds import EventKinds

# In the order an opening's snapshot sends them.
KINDS = EventKinds((BDR_EVENTS, EXPORT_EVENTS, POSTS_EVENTS))

if __name__ == "__main__":
    sys.exit(shapes.main(KINDS, "python -m pmd_service.web.event_kinds"))
