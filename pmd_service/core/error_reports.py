"""Errors to the host's Sentry when `SENTRY_DSN` is set (the optional extra `sentry`).

What leaves the process is scrubbed by key, by shape and by this process's secret values; query
strings, bodies and frame locals, which may hold a ticket or a token, are never collected.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .logs import REQUEST_ID, redact
from .settings import SECRET_FIELDS, ConfigError

if TYPE_CHECKING:
    from .settings import Settings

REDACTED = "[redacted]"
# Query parameters of presigned S3 URLs and our own tickets: whoever has them has the file.
_SIGNED_PARAMS = re.compile(
    r"(?P<name>[?&;](?:X-Amz-[A-Za-z-]+|Signature|Expires|AWSAccessKeyId|sig|ticket|token)=)"
    r"[^&\s\"'<>]+",
    re.IGNORECASE,
)
# Keys whose values are dropped, beside sentry-sdk's own denylist, which `_Scrubber` applies
# itself since sentry-sdk ignores its EventScrubber once `data_collection` is given.
EXTRA_DENYLIST = (
    "ticket",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "dsn",
    *sorted(SECRET_FIELDS),
)

_HEADER_DENYLIST = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "last-event-id",
)

_enabled = False


def configure(settings: Settings, process: str) -> bool:
    """Start reporting to Sentry when SENTRY_DSN is set; False (nothing done) when it is not."""
    global _enabled
    if not settings.sentry_dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.aiohttp import AioHttpIntegration
        from sentry_sdk.integrations.arq import ArqIntegration
        from sentry_sdk.scrubber import DEFAULT_DENYLIST
    except ImportError:
        raise ConfigError(
            "SENTRY_DSN is set but sentry-sdk is not installed: install the `sentry` extra "
            "(pip install 'pmd-service[sentry]'), or unset SENTRY_DSN."
        ) from None
    keys = frozenset(k.lower() for k in (*DEFAULT_DENYLIST, *EXTRA_DENYLIST))
    scrubber = _Scrubber(_secrets_of(settings), keys)
    try:
        sentry_sdk.init(
            dsn=settings.sentry_dsn,
            environment=settings.sentry_environment,
            release=settings.sentry_release,
            traces_sample_rate=settings.sentry_traces_sample_rate,
            integrations=[AioHttpIntegration(), ArqIntegration()],
            # Nothing that may carry a credential or a client's identity or address.
            data_collection={
                "user_info": False,
                "cookies": {"mode": "off"},
                "http_headers": {"request": {"mode": "denylist", "terms": list(_HEADER_DENYLIST)}},
                "http_bodies": [],
                "url_query_params": {"mode": "off"},
                "database_query_data": False,
                "stack_frame_variables": False,
            },
            before_send=scrubber.event,
            before_send_transaction=scrubber.event,
            before_breadcrumb=lambda crumb, hint: scrubber.walk(crumb),
        )
    except sentry_sdk.utils.BadDsn as exc:  # the settings check its shape; this, the rest
        raise ConfigError(f"SENTRY_DSN: {exc}") from None
    sentry_sdk.set_tag("process", process)
    _enabled = True
    return True


def tag(name: str, value: str) -> None:
    """Tag the events of the current request or job (a no-op when Sentry is off)."""
    if _enabled:
        import sentry_sdk

        sentry_sdk.set_tag(name, value)


Job = Callable[..., Coroutine[Any, Any, Any]]


def job_reporter(name: str, job: Job) -> Job:
    """`job` reporting each exception escaping it, for a Worker the arq integration misses."""
    if not _enabled:
        return job
    import sentry_sdk
    from arq.worker import JobExecutionFailed, Retry, RetryJob
    from sentry_sdk.utils import event_from_exception

    @functools.wraps(job)
    async def reported(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await job(ctx, *args, **kwargs)
        except (Retry, RetryJob, JobExecutionFailed):
            raise  # arq's control flow: a retry is no failure
        except Exception:
            event, hint = event_from_exception(
                sys.exc_info(),
                client_options=sentry_sdk.get_client().options,
                mechanism={"type": "arq", "handled": False},
            )
            event["transaction"] = name
            event.setdefault("tags", {})["arq_task_id"] = str(ctx.get("job_id"))
            sentry_sdk.capture_event(event, hint=hint)
            raise

    return reported


def _secrets_of(settings: Settings) -> tuple[str, ...]:
    """This process's secret values, each masked wherever it appears in an event."""
    values = []
    for name in SECRET_FIELDS:
        value = getattr(settings, name)
        if value and name.endswith("_url"):  # a URL's password
            value = unquote(urlsplit(value).password or "")
        values.append(value)
    # Short values would mask ordinary words; no real secret here is that short.
    return tuple(sorted({v for v in values if v and len(v) >= 6}, key=len, reverse=True))


class _Scrubber:
    def __init__(self, secrets: tuple[str, ...], keys: frozenset[str]) -> None:
        self.secrets = secrets
        self.keys = keys

    def text(self, value: str) -> str:
        value = redact(_SIGNED_PARAMS.sub(lambda m: m.group("name") + REDACTED, value))
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        return value

    def walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                k: REDACTED if isinstance(k, str) and k.lower() in self.keys else self.walk(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.walk(v) for v in value]
        return value

    def event(self, event: Any, hint: Any) -> Any:
        tags = event.setdefault("tags", {})
        request_id = REQUEST_ID.get()
        if request_id and "request_id" not in tags:
            tags["request_id"] = request_id
        return self.walk(event)
