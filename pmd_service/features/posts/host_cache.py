"""The host's cached feeds, dropped in the background by budgeted SCANs after an action."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator

import redis.asyncio as aioredis
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio.client import Pipeline

log = logging.getLogger(__name__)

# Slots per SCAN step (a hint to Redis): each step stays a few ms of the host's Redis.
SCAN_COUNT = 10_000
UNLINK_BATCH = 1_000
# A pass's running time before it pauses (it then carries on where it stopped).
BUDGET_SECONDS = 10.0
# The first pause after a pass that did not finish; doubled after each failure up to the cap.
RETRY_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
# At shutdown, how long a pending or running pass may still take (the process must exit soon).
SHUTDOWN_SECONDS = 1.0


def create_host_cache(url: str) -> aioredis.Redis:
    cache: aioredis.Redis = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    return cache


def scan_match(patterns: tuple[str, ...]) -> str:
    """One MATCH covering every pattern (`feed:`, `hashtags:` give `[fh][ae][es][dh][:t]*`)."""
    if len(patterns) == 1:
        return patterns[0]
    prefixes = [re.split(r"[*?\[\\]", p, maxsplit=1)[0] for p in patterns]
    classes = []
    for chars in zip(*prefixes, strict=False):
        kept = sorted(set(chars))
        classes.append(kept[0] if len(kept) == 1 else "[" + "".join("\\" + c for c in kept) + "]")
    return "".join(classes) + "*"


def _glob_regex(pattern: str) -> str:
    """A Redis glob (`*`, `?`, `[…]` with `^` and ranges, `\\` escapes) as a regex."""
    out, i = [], 0
    while i < len(pattern):
        c, i = pattern[i], i + 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i < len(pattern):
            out.append(re.escape(pattern[i]))
            i += 1
        elif c == "[" and (end := pattern.find("]", i)) >= 0:
            body, i = pattern[i:end], end + 1
            negate = body.startswith("^")
            body = re.sub(r"\\(.)", r"\1", body[negate:])
            parts = [re.escape(x) for x in body.split("-")]
            out.append("[" + "^" * negate + "-".join(parts) + "]")
        else:
            out.append(re.escape(c))
    return "".join(out)


def _unlink(pipe: Pipeline, keys: list[bytes]) -> None:
    for start in range(0, len(keys), UNLINK_BATCH):
        pipe.unlink(*keys[start : start + UNLINK_BATCH])


class FeedDrops:
    """The background task dropping `patterns` from the host's `cache`, and its counts."""

    def __init__(
        self,
        cache: aioredis.Redis,
        patterns: tuple[str, ...],
        *,
        budget: float = BUDGET_SECONDS,
        retry: float = RETRY_SECONDS,
    ) -> None:
        self.cache = cache
        self._match = scan_match(patterns)
        # Keys are bytes; latin-1 maps each byte to one character, as Redis's glob sees them.
        self._wanted = re.compile("|".join(f"(?:{_glob_regex(p)})" for p in patterns), re.DOTALL)
        self._budget, self._retry = budget, retry
        self._stale = asyncio.Event()
        self._cursor = 0
        self._owed = False  # a pass started and not yet through
        self._task: asyncio.Task[None] | None = None
        self.passes = 0  # passes that went through the whole key space
        self.stops = 0  # pauses: a pass over its budget, or a Redis error
        self.dropped = 0  # keys removed

    def request(self) -> None:
        """The feeds are stale from now: a pass that starts after this call drops them."""
        self._stale.set()

    @property
    def idle(self) -> bool:
        """No pass owed: every request so far is covered by a finished pass."""
        return not (self._owed or self._stale.is_set())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="host-feed-drops")

    async def stop(self) -> None:
        """Cancels the task; a pass still owed gets SHUTDOWN_SECONDS to finish."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            async with asyncio.timeout(SHUTDOWN_SECONDS):
                while not self.idle:
                    await self._attempt()
        except Exception as exc:  # shutting down: say so, and go on
            log.warning("shutdown: the host's cached feeds are left to expire (%r)", exc)

    async def pass_now(self, within: float) -> bool:
        """One whole pass now, without the task: False past `within` seconds or on an error."""
        try:
            async with asyncio.timeout(within):
                while not await self._attempt():
                    pass
        except Exception as exc:  # nothing here may fail the job that changed the posts
            log.warning("the host's cached feeds are left to expire (%r)", exc)
            return False
        return True

    async def _run(self) -> None:
        pause = self._retry
        while True:
            if not self._owed:
                await self._stale.wait()
            try:
                if await self._attempt():
                    pause = self._retry
                    continue
                log.warning(
                    "dropping the host's cached feeds takes over %s s (%d keys so far): "
                    "carrying on in %s s",
                    self._budget,
                    self.dropped,
                    self._retry,
                )
                delay = self._retry
            except Exception as exc:  # whatever failed, the pass starts over
                self._cursor, delay = 0, pause
                pause = min(pause * 2, RETRY_MAX_SECONDS)
                log.warning(
                    "could not drop the host's cached feeds (%r): retrying in %s s", exc, delay
                )
            self.stops += 1
            await asyncio.sleep(delay)

    async def _attempt(self) -> bool:
        """SCAN steps of the pass owed (a new pass when none is under way) from the saved cursor
        until the key space ends (True: the pass is done) or the budget does."""
        if self._cursor == 0:
            self._stale.clear()  # a pass from the start covers every request made so far
        self._owed = True
        loop = asyncio.get_running_loop()
        started, cursor, found = loop.time(), self._cursor, list[bytes]()
        while True:
            async with self.cache.pipeline(transaction=False) as pipe:
                _unlink(pipe, found)
                pipe.scan(cursor, match=self._match, count=SCAN_COUNT)
                *unlinked, (after, keys) = await pipe.execute()
            self.dropped += sum(unlinked)
            cursor = int(after)
            found = [k for k in keys if self._wanted.fullmatch(k.decode("latin-1"))]
            if cursor == 0 or loop.time() - started >= self._budget:
                break
        if found:
            async with self.cache.pipeline(transaction=False) as pipe:
                _unlink(pipe, found)
                self.dropped += sum(await pipe.execute())
        self._cursor = cursor
        if cursor != 0:
            return False
        self._owed = False
        self.passes += 1
        return True


_COUNTERS = (
    ("pmd_host_cache_passes", "Passes over the host's cache that dropped its feeds", "passes"),
    ("pmd_host_cache_stops", "Passes paused (over budget) or failed (Redis error)", "stops"),
    ("pmd_host_cache_keys_dropped", "Cached feed keys dropped", "dropped"),
)


class FeedDropsCollector(Collector):
    def __init__(self, drops: FeedDrops) -> None:
        self.drops = drops

    def collect(self) -> Iterator[Metric]:
        for name, doc, count in _COUNTERS:
            yield CounterMetricFamily(name, doc, value=getattr(self.drops, count))
