"""The Redis client used to enqueue arq jobs (and hold SSE tickets). Each feature enqueues its
own job: bdr/queue.py, exports/queue.py. Jobs are JSON (job_codec.py), never pickle."""

from __future__ import annotations

from urllib.parse import unquote

from arq.connections import ArqRedis, RedisSettings

from . import job_codec


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    # from_dsn keeps them percent-encoded, as the URL has them (redis-py's from_url decodes).
    for name in ("username", "password"):
        if value := getattr(settings, name):
            setattr(settings, name, unquote(value))
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
        job_serializer=job_codec.serialize,
        job_deserializer=job_codec.deserialize,
    )
