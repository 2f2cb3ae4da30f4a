"""pmd-service: the Post Management Dashboard backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__version__ = "0.1.0"


def dev_servers(data_dir: Path, database_url: str | None, redis_url: str | None) -> tuple[str, str]:
    """The entry points' `embedded` for load_settings, called in dev mode only: dev/ is
    imported only then, so production never imports it."""
    from .dev.embedded import services

    return services(data_dir, database_url, redis_url)
