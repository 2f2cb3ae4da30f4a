"""The SQL migrations, applied in order by `pmd_service.core.migrate`: this folder is their one
source, installed as the data-only subpackage `pmd_service.migrations` (see pyproject.toml)."""
