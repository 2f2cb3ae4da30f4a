"""The Redis clients: the server's, which enqueues arq jobs and holds SSE tickets, and the
worker's arq pool; jobs are JSON (job_codec.py), never pickle."""

from __future__ import annotations

from urllib.parse import unquote

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import job_codec

# Fail fast: a request must not hang on an unreachable Redis (it is re-enqueued later).
CONNECT_TIMEOUT = 2
# arq's poll loop has no error handling: the worker retries each call for about a minute.
REDIS_RETRIES = 40
REDIS_BACKOFF_CAP = 2.0


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    # from_dsn keeps them percent-encoded, as the URL has them (redis-py's from_url decodes).
    for name in ("username", "password"):
        if value := getattr(settings, name):
            setattr(settings, name, unquote(value))
    settings.conn_timeout = CONNECT_TIMEOUT
    settings.conn_retries = 2
    return settings


def worker_redis_settings(url: str) -> RedisSettings:
    """The worker's: every call retried (see REDIS_RETRIES)."""
    settings = redis_settings(url)
    settings.retry = Retry(ExponentialBackoff(cap=REDIS_BACKOFF_CAP, base=0.1), REDIS_RETRIES)
    # OSError too: redis-py retries a refused reconnect only when the socket's error is listed.
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
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
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=5,
        encoding="utf8",
        job_serializer=job_codec.serialize,
        job_deserializer=job_codec.deserialize,
    )
