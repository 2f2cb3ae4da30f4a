"""Enqueueing `process_bdr`: job id `bdr:<id>`, so arq never queues one BDR twice."""

from __future__ import annotations

import uuid

from arq.connections import ArqRedis

JOB_NAME = "process_bdr"


def job_id(bdr_id: uuid.UUID, retake: str | None = None) -> str:
    # A retake (after a worker died holding the job) needs a fresh id: arq still holds the
    # dead run's job under the plain id until its timeout passes.
    return f"bdr:{bdr_id}" if retake is None else f"bdr:{bdr_id}:{retake}"


async def enqueue_bdr(redis: ArqRedis, bdr_id: uuid.UUID, retake: str | None = None) -> bool:
    """True if queued now; False if a job with that id is already queued or running."""
    job = await redis.enqueue_job(JOB_NAME, str(bdr_id), _job_id=job_id(bdr_id, retake))
    return job is not None
