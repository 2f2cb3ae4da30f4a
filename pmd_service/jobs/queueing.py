"""How a kind's rows are claimed and its jobs queued in arq; light on purpose, as the servers
enqueue through it and import no more."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from arq.connections import ArqRedis

from ..core.named_sql import Named

MAX_ATTEMPTS = 4  # the first run and three retries

# Which row a run may claim: pending, or processing but held by no run, or by a run whose
# heartbeat stopped `:stale` seconds ago.
CLAIMABLE = """(status = 'pending'
       OR (status = 'processing'
           AND (claim_token IS NULL OR heartbeat_at < now() - make_interval(secs => :stale))))"""
# Row `:id` still held by the run of claim token `:token`.
OWNED = "id = :id AND claim_token = :token AND status = 'processing'"


def lock_owned(table: str) -> Named:
    """Row `:id` of `table` locked while the run of claim token `:token` still holds it."""
    return Named(f"SELECT 1 FROM {table} WHERE {OWNED} FOR UPDATE")


@dataclass(frozen=True)
class Queueing:
    """A kind's arq job: `process_{name}` under the job id `{name}:<row id>`, queued once."""

    name: str  # "bdr": the kind's name, its job ids' prefix and its function's suffix
    max_tries: int
    timeout: int  # seconds

    @property
    def function(self) -> str:
        return f"process_{self.name}"

    def job_id(self, row_id: uuid.UUID, retake: str | None = None) -> str:
        # A retake needs a fresh id: arq holds a dead run's plain id until its timeout passes.
        return f"{self.name}:{row_id}" if retake is None else f"{self.name}:{row_id}:{retake}"

    async def enqueue(self, redis: ArqRedis, row_id: uuid.UUID, retake: str | None = None) -> bool:
        """True if queued now; False if a job with that id is already queued or running."""
        job = await redis.enqueue_job(
            self.function, str(row_id), _job_id=self.job_id(row_id, retake)
        )
        return job is not None
