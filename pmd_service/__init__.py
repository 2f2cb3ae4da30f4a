"""pmd-service: the Post Management Dashboard backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

# The release, defined here only: pyproject.toml's dynamic version, `--version`, `/healthz` and
# the OpenAPI document read it, and the image's build refuses a label that differs.
__version__ = "0.2.0"


def dev_servers(data_dir: Path, database_url: str | None, redis_url: str | None) -> tuple[str, str]:
    """The entry points' `embedded` for load_settings: dev/ is imported in dev mode only."""
    from .dev.embedded import services

    return services(data_dir, database_url, redis_url)
