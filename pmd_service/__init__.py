"""pmd-service: the Post Management Dashboard backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

# The release, defined here only: the package's metadata reads it (pyproject.toml's dynamic
# version), as do `--version`, `/healthz` and the OpenAPI document; the image's build refuses a
# label that differs. CHANGELOG.md says what each release changed.
__version__ = "0.2.0"


def dev_servers(data_dir: Path, database_url: str | None, redis_url: str | None) -> tuple[str, str]:
    """The entry points' `embedded` for load_settings, called in dev mode only: dev/ is
    imported only then, so production never imports it."""
    from .dev.embedded import services

    return services(data_dir, database_url, redis_url)
