"""The SQL migrations, applied in order by `pmd_service.core.migrate`: this folder is their one
source, installed through the link `pmd_service/migrations` as the data-only subpackage."""
