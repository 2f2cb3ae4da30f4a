"""The SSE server's heap keeper (sse/heap.py) freezes each wave of new streams as it arrives.

Run in a child interpreter: freezing is process-wide, and this test process runs many apps
whose objects must stay collectable.
"""

from __future__ import annotations

from tests.helpers import run_python

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


def _prints_ok(child: str) -> None:
    """`child` run in an interpreter of its own, to its `ok`."""
    done = run_python("-c", child)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_each_wave_of_streams_is_frozen_as_it_opens() -> None:
    _prints_ok(CHILD)


# A storm: every stream ends and opens again at once. The full collection that reclaims the
# ended streams' frozen garbage waits until openings pause, unless the garbage piles up.
RECLAIM_CHILD = """
from pmd_service.sse.heap import OVERDUE, QUIET_S, RECLAIM_AT_LEAST, HeapKeeper

now = [100.0]
keeper = HeapKeeper(clock=lambda: now[0])
keeper.start()
open_now = 2 * RECLAIM_AT_LEAST
keeper.opened(1)
keeper.tend(opened=1, ended=open_now, open_now=open_now)  # mid-storm: openings still coming
assert keeper.reclaims == 0
now[0] += QUIET_S
keeper.tend(opened=1, ended=open_now, open_now=open_now)  # the storm is over
assert keeper.reclaims == 1
keeper.opened(2)
keeper.tend(opened=2, ended=open_now + OVERDUE * open_now, open_now=open_now)  # piled up
assert keeper.reclaims == 2
keeper.stop()
print("ok")
"""


def test_the_reclaim_waits_for_openings_to_pause_unless_garbage_piles_up() -> None:
    _prints_ok(RECLAIM_CHILD)
