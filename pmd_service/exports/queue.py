"""Enqueueing `process_export`: job id `export:<id>`, so arq never queues one export twice."""

from __future__ import annotations

import uuid

from arq.connections import ArqRedis

EXPORT_JOB_NAME = "process_export"


def export_job_id(export_id: uuid.UUID, retake: str | None = None) -> str:
    return f"export:{export_id}" if retake is None else f"export:{export_id}:{retake}"


async def enqueue_export(redis: ArqRedis, export_id: uuid.UUID, retake: str | None = None) -> bool:
    """True if queued now; False if a job with that id is already queued or running."""
    job = await redis.enqueue_job(
        EXPORT_JOB_NAME, str(export_id), _job_id=export_job_id(export_id, retake)
    )
    return job is not None
