"""How a kind's jobs are queued in arq: one shape, each kind a value of it (bdr/queue.py,
exports/queue.py). Light on purpose: the servers enqueue through it and import no more."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from arq.connections import ArqRedis

MAX_ATTEMPTS = 4  # the first run and three retries


@dataclass(frozen=True)
class Queueing:
    """A kind's arq job: `process_{name}` under the job id `{name}:<row id>`, so that arq never
    queues one row twice; its function's tries and timeout, as the worker registers it."""

    name: str  # "bdr": the kind's name, its job ids' prefix and its function's suffix
    max_tries: int
    timeout: int  # seconds

    @property
    def function(self) -> str:
        return f"process_{self.name}"

    def job_id(self, row_id: uuid.UUID, retake: str | None = None) -> str:
        # A retake (after a worker died holding the job) needs a fresh id: arq still holds the
        # dead run's job under the plain id until its timeout passes.
        return f"{self.name}:{row_id}" if retake is None else f"{self.name}:{row_id}:{retake}"

    async def enqueue(self, redis: ArqRedis, row_id: uuid.UUID, retake: str | None = None) -> bool:
        """True if queued now; False if a job with that id is already queued or running."""
        job = await redis.enqueue_job(
            self.function, str(row_id), _job_id=self.job_id(row_id, retake)
        )
        return job is not None
