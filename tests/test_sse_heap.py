"""The SSE server's heap keeper (sse/heap.py) freezes each wave of new streams as it arrives.

Run in a child interpreter: freezing is process-wide, and this test process runs many apps
whose objects must stay collectable.
"""

from __future__ import annotations

import subprocess
import sys

# ~70 GC-tracked objects a stream, as aiohttp's request, response and protocol are; openings
# arrive with no once-a-second `tend` between them (a whole site reconnecting at once).
CHILD = """
import gc
from pmd_service.sse.heap import FREEZE_EVERY, HeapKeeper

keeper = HeapKeeper()
keeper.start()
frozen_at_start = gc.get_freeze_count()
streams = []
for opened in range(1, 2 * FREEZE_EVERY + 1):
    streams.append([[] for _ in range(70)])
    keeper.opened(opened)
    assert keeper.freezes == opened // FREEZE_EVERY, (opened, keeper.freezes)
# Both waves are out of the collector's reach, so a full collection walks neither.
assert gc.get_freeze_count() - frozen_at_start >= 2 * FREEZE_EVERY * 70
assert sum(gc.get_count()) < FREEZE_EVERY * 70
keeper.stop()
print("ok")
"""


def test_each_wave_of_streams_is_frozen_as_it_opens() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
