"""How many proxied downloads stream at once, per user and in the process (proxy mode)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import NoReturn

from ..core.codes import Code
from ..core.problems import ProblemError

log = logging.getLogger(__name__)

BUSY_RETRY_AFTER = 30


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


# glibc keeps a finished download's freed buffers in its arenas: a trim gives them back.
RELEASE_FREE_MEMORY = _malloc_trim()
# The store client's threads free a download's buffers a moment after its stream ends.
TRIM_DELAY_SECONDS = 0.5


class ProxySlots:
    """Proxied downloads streaming in this process, capped per user and in all."""

    def __init__(self, total: int, per_user: int) -> None:
        self.total = total
        self.per_user = per_user
        self.by_user: Counter[int] = Counter()
        self.active = 0
        self.refused: Counter[str] = Counter()  # "user" (429), "server" (503)
        self._trim: asyncio.TimerHandle | None = None

    def check(self, user_id: int) -> None:
        """Refuse now (429, 503) what `hold` would refuse."""
        if self.by_user[user_id] >= self.per_user:
            self._refuse(
                "user",
                "too-many-downloads",
                Code.TOO_MANY_DOWNLOADS,
                f"{self.per_user} downloads of yours are already streaming from this server; "
                "let one finish (or close it), then try again.",
                limit=self.per_user,
            )
        if self.active >= self.total:
            self._refuse(
                "server",
                "downloads-busy",
                Code.DOWNLOADS_BUSY,
                f"This server is streaming as many downloads as it can ({self.total}); please "
                "try again in a minute.",
            )

    def _refuse(self, by: str, slug: str, code: Code, detail: str, **details: int) -> NoReturn:
        """The user's cap (429) or the server's (503)."""
        self.refused[by] += 1
        status = HTTPStatus.TOO_MANY_REQUESTS if by == "user" else HTTPStatus.SERVICE_UNAVAILABLE
        raise ProblemError(
            status.value,
            slug,
            status.phrase,
            detail,
            headers={"Retry-After": str(BUSY_RETRY_AFTER)},
            code=code,
            details={"retry_after_seconds": BUSY_RETRY_AFTER, **details},
        )

    @contextlib.contextmanager
    def hold(self, user_id: int) -> Iterator[None]:
        self.check(user_id)
        self.by_user[user_id] += 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self.by_user[user_id] -= 1
            if not self.by_user[user_id]:
                del self.by_user[user_id]
            if not self.active and RELEASE_FREE_MEMORY is not None:
                # The last one ended: give the pages back (~ms) once its threads freed them.
                if self._trim is not None:
                    self._trim.cancel()
                self._trim = asyncio.get_running_loop().call_later(
                    TRIM_DELAY_SECONDS, self._release
                )

    def _release(self) -> None:
        self._trim = None
        if not self.active and RELEASE_FREE_MEMORY is not None:
            RELEASE_FREE_MEMORY()
