"""What a download may cost: requests a day, bytes a request (declared sizes now, the real ZIP's
while it builds), bytes a day, and disk to spare."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..core.codes import Code
from ..core.problems import ProblemError
from ..core.settings import Settings

# Free space was short: ask again after this long (the daily cleanup or an operator frees it).
LOW_DISK_RETRY_AFTER = 300


@dataclass(frozen=True)
class Limits:
    requests_a_day: int
    bytes_a_request: int
    bytes_a_day: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.bdr_daily_limit, settings.bdr_max_bytes, settings.bdr_daily_bytes)


def human_bytes(n: int) -> str:
    """1 decimal, binary units, as people read file sizes: 1.5 GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def too_large(size: int, cap: int, artworks: int) -> str:
    return (
        f"These {artworks} artworks take {human_bytes(size)}; one download may hold at most "
        f"{human_bytes(cap)}. Request fewer artworks at a time."
    )


async def ensure_free_space(settings: Settings) -> None:
    """503 while the ZIP folder's file system has less than ZIP_MIN_FREE_BYTES free."""
    floor = settings.zip_min_free_bytes
    if settings.zip_store is not None or floor <= 0:
        return
    free = await asyncio.to_thread(_free_bytes, settings.zip_path)
    if free < floor:
        raise ProblemError(
            503,
            "low-disk-space",
            "Service Unavailable",
            "The server is short of disk space for new downloads; please try again in a few "
            "minutes.",
            headers={"Retry-After": str(LOW_DISK_RETRY_AFTER)},
            code=Code.LOW_DISK_SPACE,
            details={"retry_after_seconds": LOW_DISK_RETRY_AFTER},
        )


def _free_bytes(folder: Path) -> int:
    # The folder may not exist yet (first request): its nearest existing parent's file system.
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return 0
