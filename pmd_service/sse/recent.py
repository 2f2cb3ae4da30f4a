"""The newest events a server process has read, kept so a stream that resumes with
`Last-Event-ID` (a reconnect storm is thousands at once, each missing a few events) is answered
without a pooled connection: the hub has read each of them already, in commit order.

What it holds is a contiguous run: every event with `floor < id <= newest`, as read (ids
have gaps where a transaction rolled back; no event in the run is missing). Only an id the
run can vouch for is answered here: one it holds, or its floor (itself an event id that was
read, or the newest at start-up); any other goes to the table.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from operator import itemgetter

# An event as read: its id, its kind, its audience and its payload's text (the table's columns).
Row = tuple[int, str, str, str]

# Events kept: at the end of a storm's few seconds a stream has missed a handful; a process
# that read more than this since a client's last event sends it to the table instead.
KEEP = 4096
# And at most this many bytes of payload text, whatever the events hold: every process reads
# every event, watched or not, so a count alone does not bound the memory it takes.
KEEP_BYTES = 4 * 2**20
# And for this long at most: far inside the table's day (upkeep/cleanup.py), so an id the
# table has purged ("too old": `reset` and a snapshot) is never answered here instead.
MAX_AGE_S = 3600.0


class RecentEvents:
    __slots__ = (
        "_by_user",
        "_floor_at",
        "_ids",
        "_keep",
        "_keep_bytes",
        "_max_age",
        "bytes",
        "floor",
        "newest",
    )

    def __init__(
        self, keep: int = KEEP, max_age_s: float = MAX_AGE_S, keep_bytes: int = KEEP_BYTES
    ) -> None:
        self._keep = keep
        self._keep_bytes = keep_bytes
        self._max_age = max_age_s
        self.bytes = 0  # payload text held
        # In id order: (id, user, when read) for eviction, and the rows per user for a replay
        # that looks at that user's events only.
        self._ids: deque[tuple[int, int, float]] = deque()
        self._by_user: dict[int, deque[Row]] = {}
        self.floor = -1  # nothing is vouched for until `start`
        self._floor_at = 0.0
        self.newest = -1

    def start(self, newest: int) -> None:
        """The run begins after `newest` (the table's newest event when the listener began:
        every later event will be read, in order)."""
        self._ids.clear()
        self._by_user.clear()
        self.bytes = 0
        self.floor = self.newest = newest
        self._floor_at = time.monotonic()

    def add(self, event_id: int, user_id: int, kind: str, audience: str, payload: str) -> None:
        """The next event read (ids ascending, none skipped). One read again (a batch whose
        dispatch failed is read once more) is not added twice."""
        if self.floor < 0 or event_id <= self.newest:
            return
        self._ids.append((event_id, user_id, time.monotonic()))
        self._by_user.setdefault(user_id, deque()).append((event_id, kind, audience, payload))
        self.bytes += len(payload)
        self.newest = event_id
        while len(self._ids) > self._keep or (self.bytes > self._keep_bytes and self._ids):
            old_id, old_user, self._floor_at = self._ids.popleft()
            mine = self._by_user[old_user]
            self.bytes -= len(mine.popleft()[3])
            if not mine:
                del self._by_user[old_user]
            self.floor = old_id

    def missed(self, user_id: int, after: int) -> list[Row] | None:
        """`user_id`'s events after event `after`, oldest first; None when the run cannot
        vouch that this is all of them (the table must answer)."""
        if after <= 0 or not self.floor <= after <= self.newest:  # 0: never an event id
            return None
        read_at = self._floor_at if after == self.floor else self._read_at(after)
        if read_at is None or time.monotonic() - read_at > self._max_age:
            return None
        return [e for e in self._by_user.get(user_id, ()) if e[0] > after]

    def _read_at(self, event_id: int) -> float | None:
        """When the run's event `event_id` was read; None when it holds no such id."""
        ids = self._ids
        lo = bisect_left(ids, event_id, key=itemgetter(0))
        if lo < len(ids) and ids[lo][0] == event_id:
            return ids[lo][2]
        return None
