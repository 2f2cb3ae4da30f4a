"""`python -m pmd_service.web.event_kinds [--check]` writes (or checks) the event kinds' SQL."""

from __future__ import annotations

import sys

from ..features.registry import EVENT_KINDS
from ..sse import shapes

if __name__ == "__main__":
    sys.exit(shapes.main(EVENT_KINDS, "python -m pmd_service.web.event_kinds"))
