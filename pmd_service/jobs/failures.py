"""What stops a run, whether retrying can help, and what the user is told."""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
import asyncpg
import obstore.exceptions
import redis.exceptions

from ..core.codes import Code

BACKOFF_CAP_SECONDS = 600.0


class PermanentError(Exception):
    """Retrying cannot help: the row fails on `code`; the message goes to the log."""

    def __init__(self, message: str, code: Code = Code.INTERNAL) -> None:
        super().__init__(message)
        self.code = code


class TransientError(Exception):
    """Worth retrying; the message goes to the log."""


class Refused(Exception):
    """A built archive that must not be shipped: the run stops on `error`, recording `skipped`."""

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
    # PostgreSQL's "retry the transaction": one side of a deadlock, a serialization failure.
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    redis.exceptions.RedisError,
    aiohttp.ClientError,
    obstore.exceptions.BaseError,  # the bucket unreachable, a part refused, a timeout
)


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
