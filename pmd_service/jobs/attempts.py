"""One attempt of a claimed job (a BDR's or an export's), and what its outcome is: ready, a
cancel, a failure the user is told about, or a retry later with exponential backoff. Status
is `failed` only when no retry is left (setting it before retrying meant retries never ran)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from arq import Retry

from ..zipbuild.build import BuildCancelled
from .failures import (
    BACKOFF_CAP_SECONDS,
    MAX_ATTEMPTS,
    TRANSIENT,
    UNEXPECTED_MESSAGE,
    PermanentError,
    transient_message,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


async def attempt(
    what: str,
    attempts: Callable[[], int],
    build: Callable[[], Awaitable[None]],
    fail: Callable[[str], Awaitable[object]],
    release: Callable[[float], Awaitable[object]],
    retry_base_seconds: float,
) -> str:
    """ready, failed or cancelled; raises Retry when a later attempt may succeed. `what` names
    the job in log lines ("BDR <id>"); `attempts()` is the run's attempt number (read again
    after a failure: an export's published part starts its count again); `release(defer)` hands
    the row back for the retry."""
    if attempts() > MAX_ATTEMPTS:
        await fail(transient_message(TimeoutError()))
        return "failed"
    try:
        await build()
        return "ready"
    except BuildCancelled:
        return "cancelled"
    except PermanentError as exc:
        await fail(str(exc))
    except TRANSIENT as exc:
        n = attempts()
        if n >= MAX_ATTEMPTS:
            log.warning("%s: attempt %d failed (%r); giving up", what, n, exc)
            await fail(transient_message(exc))
        else:
            defer = min(BACKOFF_CAP_SECONDS, retry_base_seconds * 4 ** (n - 1))
            log.warning("%s: attempt %d failed (%r); retry in %.0f s", what, n, exc, defer)
            with contextlib.suppress(*TRANSIENT):
                await release(defer)
            raise Retry(defer=defer) from exc
    except Exception:
        log.exception("%s: unexpected error", what)
        await fail(UNEXPECTED_MESSAGE)
    return "failed"


async def claimed(what: str, claim: Callable[[], Awaitable[T]], retry_base_seconds: float) -> T:
    """The job's claim, or a Retry when the database cannot be reached for it: nothing is the
    run's yet, so trying again soon is all there is to do (escaping, the error ended the job
    as failed, with an ERROR and a traceback, and the row waited for the sweep)."""
    try:
        return await claim()
    except TRANSIENT as exc:
        defer = max(retry_base_seconds, 1.0)
        log.warning("%s: could not claim it (%r); retry in %.0f s", what, exc, defer)
        raise Retry(defer=defer) from exc
