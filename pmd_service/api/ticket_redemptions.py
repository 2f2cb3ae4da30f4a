"""Tickets spent many to a round trip: one event-loop turn's spends, one pipeline of GETDELs."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

# Spends a pipeline carries at most (the rest wait for the next one).
MAX_BATCH = 500
# Pipelines out at once: a second lets spends flow while one is out.
IN_FLIGHT = 2


class Redemptions:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._waiting: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        self.round_trips = 0  # for tests and benchmarks: spends answered per round trip
        self.spent = 0
        self.asked = 0  # spends asked to wait for a batch

    async def getdel(self, key: str) -> bytes | None:
        """GETDEL `key`, batched with the spends of this loop turn; RedisError as Redis's."""
        return await self.spend(key)

    def spend(self, key: str) -> asyncio.Future[bytes | None]:
        """`getdel` started now, its answer awaited later (or never: the key is spent anyway)."""
        loop = asyncio.get_running_loop()
        if self._stopped:  # a request still served as the server stops: alone, as before
            return asyncio.ensure_future(self._redis.getdel(key))
        found: asyncio.Future[bytes | None] = loop.create_future()
        self.asked += 1
        self._waiting.append((key, found))
        if not self._scheduled and self._in_flight < IN_FLIGHT:
            # The next loop turn: every opening handled in this one joins the batch.
            self._scheduled = True
            loop.call_soon(self._send)
        return found

    def _send(self) -> None:
        self._scheduled = False
        while self._waiting and self._in_flight < IN_FLIGHT and not self._stopped:
            batch = self._waiting[:MAX_BATCH]
            del self._waiting[:MAX_BATCH]
            self._in_flight += 1
            task = asyncio.create_task(self._pipeline(batch), name="ticket-redemptions")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipeline(self, batch: list[tuple[str, asyncio.Future[bytes | None]]]) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, _ in batch:
                pipe.getdel(key)
            answers = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection's: every spend of the batch answers it
            for _, found in batch:
                if not found.done():
                    found.set_exception(exc)
        else:
            self.round_trips += 1
            for (_, found), answer in zip(batch, answers, strict=True):
                if found.done():  # its opening was cancelled meanwhile: the ticket is spent
                    continue
                if isinstance(answer, Exception):
                    found.set_exception(answer)
                else:
                    self.spent += 1
                    found.set_result(answer)
        finally:
            for _, found in batch:  # only when this pipeline itself was cancelled
                found.cancel()
            self._in_flight -= 1
            self._send()

    async def stop(self) -> None:
        """At shutdown: no pipeline is sent any more, and what waits for one is cancelled."""
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, found in self._waiting:
            found.cancel()
        self._waiting.clear()
