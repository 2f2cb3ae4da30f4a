"""What stops a run, whether retrying can help, and what the user is told."""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
import asyncpg
import obstore.exceptions
import redis.exceptions

from ..core.codes import Code
from .queueing import MAX_ATTEMPTS

BACKOFF_CAP_SECONDS = 600.0


class PermanentError(Exception):
    """Retrying cannot help; the message is shown to the user as is, `code` beside it."""

    def __init__(self, message: str, code: Code = Code.INTERNAL) -> None:
        super().__init__(message)
        self.code = code


class TransientError(Exception):
    """Worth retrying; the message is shown if no retry is left."""


class Refused(Exception):
    """A built archive that must not be shipped: the run stops on `error` as if it were raised,
    and a failed row records `skipped`, what the build left out (jobs/driver.py)."""

    def __init__(self, error: Exception, skipped: list[dict[str, Any]]) -> None:
        super().__init__(str(error))
        self.error = error
        self.skipped = skipped


# Database, Redis, disk, object store and network trouble: retried with backoff.
TRANSIENT = (
    TransientError,
    OSError,  # TimeoutError and ConnectionError included
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    redis.exceptions.RedisError,
    aiohttp.ClientError,
    obstore.exceptions.BaseError,  # the bucket unreachable, a part refused, a timeout
)


def unexpected_message(noun: str) -> str:
    """What the user is told when a run of their `noun` ("download", "export") stops on an error
    nobody classified: a bug, never a fault of the machine."""
    return f"An unexpected error stopped this {noun}; it has been logged. Please request it again."


_REASON_TEXT = {
    "deleted": "deleted",
    "not_owner": "no longer yours",
    "playlist": "playlists",
    "file_missing": "missing their file",
    "fetch_failed": "unreachable on the artwork server",
}


def nothing_added(skipped: list[tuple[int, str]]) -> Exception:
    counts = Counter(reason for _, reason in skipped)
    if counts.get("fetch_failed"):
        return TransientError(
            "The artwork server could not be reached for any of the requested artworks; "
            "please try again later."
        )
    parts = ", ".join(f"{n} {_REASON_TEXT[r]}" for r, n in counts.most_common())
    return PermanentError(
        f"None of the {len(skipped)} requested artworks could be added ({parts}); "
        "a ZIP without artworks is not made. Choose other posts and request again.",
        Code.NO_POSTS,
    )


def transient_message(exc: BaseException, noun: str) -> str:
    if isinstance(exc, OSError) and exc.errno == 28:
        return "The server ran out of disk space while building the ZIP; please request it again later."
    if isinstance(exc, TransientError):
        return str(exc)
    return (
        f"The {noun} could not be prepared after {MAX_ATTEMPTS} attempts because of a "
        "temporary problem on our side; please request it again later."
    )
