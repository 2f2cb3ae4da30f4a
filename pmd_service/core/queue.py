"""The Redis client used to enqueue arq jobs (and hold SSE tickets), and enqueueing `process_bdr`:
job id `bdr:<id>`, so arq never queues one BDR twice."""

from __future__ import annotations

import uuid

from arq.connections import ArqRedis, RedisSettings

JOB_NAME = "process_bdr"


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    # Fail fast: a request must not hang on an unreachable Redis (it is re-enqueued later).
    settings.conn_timeout = 2
    settings.conn_retries = 2
    return settings


def create_redis(url: str) -> ArqRedis:
    """An ArqRedis that connects lazily, so the server starts (and reports unready) without Redis."""
    s = redis_settings(url)
    return ArqRedis(
        host=s.host,
        port=s.port,
        unix_socket_path=s.unix_socket_path,
        db=s.database,
        username=s.username,
        password=s.password,
        ssl=s.ssl,
        socket_connect_timeout=2,
        socket_timeout=5,
        encoding="utf8",
    )


def job_id(bdr_id: uuid.UUID, retake: str | None = None) -> str:
    # A retake (after a worker died holding the job) needs a fresh id: arq still holds the
    # dead run's job under the plain id until its timeout passes.
    return f"bdr:{bdr_id}" if retake is None else f"bdr:{bdr_id}:{retake}"


async def enqueue_bdr(redis: ArqRedis, bdr_id: uuid.UUID, retake: str | None = None) -> bool:
    """True if queued now; False if a job with that id is already queued or running."""
    job = await redis.enqueue_job(JOB_NAME, str(bdr_id), _job_id=job_id(bdr_id, retake))
    return job is not None


EXPORT_JOB_NAME = "process_export"


def export_job_id(export_id: uuid.UUID, retake: str | None = None) -> str:
    return f"export:{export_id}" if retake is None else f"export:{export_id}:{retake}"


async def enqueue_export(redis: ArqRedis, export_id: uuid.UUID, retake: str | None = None) -> bool:
    """True if queued now; False if a job with that id is already queued or running."""
    job = await redis.enqueue_job(
        EXPORT_JOB_NAME, str(export_id), _job_id=export_job_id(export_id, retake)
    )
    return job is not None
