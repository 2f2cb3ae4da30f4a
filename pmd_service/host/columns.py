"""Whether a column of the host's newer releases is there and the service's role may read it:
asked of the catalog, and again every RECHECK_SECONDS to see a host upgraded meanwhile."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

SQL_COLUMN_READABLE = """
SELECT found, found AND has_column_privilege($1, $2, 'SELECT') AS readable
FROM (SELECT EXISTS (SELECT 1 FROM pg_attribute
                     WHERE attrelid = to_regclass($1) AND attname = $2
                       AND attnum > 0 AND NOT attisdropped) AS found) f
"""
RECHECK_SECONDS = 600.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Column:
    found: bool
    readable: bool


_known: dict[tuple[str, str, str, str], tuple[float, Column]] = {}


async def host_column(
    pool: asyncpg.Pool, database_url: str, schema: str, table: str, column: str, without: str
) -> Column:
    """The host's `schema`.`table`.`column`: there, and readable by the service's role; at each
    check that finds it there but unreadable, a warning says `without` it the service does."""
    where = (database_url, schema, table, column)
    known = _known.get(where)
    if known is not None and time.monotonic() < known[0]:
        return known[1]
    row = await pool.fetchrow(SQL_COLUMN_READABLE, f'"{schema}".{table}', column)
    assert row is not None  # one row, whatever the catalog holds
    found = Column(bool(row["found"]), bool(row["readable"]))
    if found.found and not found.readable:
        log.warning(
            "%s.%s is there but the service's role may not read it: %s until the output of "
            "`python -m pmd_service grants` is run again",
            table,
            column,
            without,
        )
    _known[where] = (time.monotonic() + RECHECK_SECONDS, found)
    return found
